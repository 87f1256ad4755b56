//! `generate`: the demo marketplace written as JSONL, the shape `coordinator
//! import` reads, with its hidden truth optionally beside it.

use crate::cli::GenerateArgs;
use anyhow::Context;
use serde_json::json;
use spotcheck_simulation::demo::{DemoListing, generate};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes one listing JSON object a line.
pub fn write_listings(out: &mut impl Write, listings: &[DemoListing]) -> anyhow::Result<()> {
    for d in listings {
        serde_json::to_writer(&mut *out, &d.listing)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Writes `{"listing_id", "counterfeit"}` a line.
pub fn write_truth(out: &mut impl Write, listings: &[DemoListing]) -> anyhow::Result<()> {
    for d in listings {
        let line = json!({ "listing_id": d.listing.listing_id, "counterfeit": d.counterfeit });
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn write_file(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    f(&mut out).with_context(|| format!("writing {}", path.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// `spotcheck-sim generate`.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let listings = generate(args.market.seed, args.market.count);
    write_file(&args.out, |out| write_listings(out, &listings))?;
    if let Some(path) = &args.truth {
        write_file(path, |out| write_truth(out, &listings))?;
    }
    let fakes = listings.iter().filter(|d| d.counterfeit).count();
    eprintln!(
        "wrote {} listings ({fakes} counterfeit) to {}",
        listings.len(),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotcheck_shared::Listing;

    #[test]
    fn every_written_line_is_a_listing_the_importer_accepts() {
        let listings = generate(3, 20);
        let mut buf = Vec::new();
        write_listings(&mut buf, &listings).unwrap();
        let lines: Vec<&[u8]> = buf
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 20);
        for (line, d) in lines.iter().zip(&listings) {
            assert_eq!(Listing::from_json(line).unwrap(), d.listing);
        }
    }

    #[test]
    fn the_truth_file_names_each_listing_and_its_truth() {
        let listings = generate(3, 5);
        let mut buf = Vec::new();
        write_truth(&mut buf, &listings).unwrap();
        let first: serde_json::Value =
            serde_json::from_slice(buf.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["listing_id"], listings[0].listing.listing_id.as_str());
        assert_eq!(first["counterfeit"], listings[0].counterfeit);
    }
}
