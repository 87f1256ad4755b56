//! The coordinator binary: `run` (default), `migrate`, `import FILE` or `export`.

use clap::Parser;

use coordinator::config::{Cli, Command};

/// mimalloc instead of the system allocator, as in worker-api, where the
/// system's spent a quarter of the time in malloc and free under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    spotcheck_platform::telemetry::init(cli.config.json_logs());
    cli.config.services.read_secret_files()?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let app = coordinator::App::build(cli.config).await?;
            app.run_until_stopped(spotcheck_platform::shutdown::signal())
                .await
        }
        Command::Migrate => coordinator::app::migrate_only(&cli.config).await,
        Command::Import { file } => coordinator::import::run(&cli.config, &file).await,
        Command::Export(args) => {
            let written = coordinator::export::run(&cli.config, &args).await?;
            tracing::info!(bytes = written, what = args.what.as_str(), "export written");
            Ok(())
        }
    }
}
