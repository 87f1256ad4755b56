//! The web app under `/app/`: the volunteer review page and the staff console,
//! hand-written HTML, CSS and ES modules from the repository's `web/` folder,
//! embedded into the binary at compile time (nothing is read from disk or
//! fetched from elsewhere at run time) and served with strict security headers.

use crate::routes::no_such_route;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The page's policy: its own scripts and styles only, images from the page or
/// any https address (listing photos live on the marketplace's hosts), API
/// calls to the same origin, never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' https: data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// One embedded file of the app.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// `asset!("app.js", "text/javascript")`: the file `web/app.js`, embedded.
macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../web/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the app; `index.html` is served at `/app/` only.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("i18n.js", JS),
    asset!("outbox.js", JS),
    asset!("listing.js", JS),
    asset!("review.js", JS),
    asset!("staff.js", JS),
    asset!("chart.js", JS),
    asset!("policy.js", JS),
    asset!("rules.js", JS),
    asset!("dashboard.js", JS),
    asset!("volunteers.js", JS),
    asset!("users.js", JS),
    asset!("icon.svg", "image/svg+xml"),
];

/// Each asset's entity tag (a digest of its bytes), computed once.
fn etags() -> &'static [HeaderValue] {
    static TAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = hex::encode(&Sha256::digest(a.body)[..12]);
                HeaderValue::from_str(&format!("\"{digest}\"")).expect("hex is a valid header")
            })
            .collect()
    })
}

/// `GET /app/`: the app's page.
#[utoipa::path(get, path = "/app/", responses(
    (status = 200, description = "The app's page.", body = String, content_type = "text/html"),
    (status = 304, description = "Unchanged since the `If-None-Match` tag."),
))]
pub async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /app/{file}`: one of the app's scripts, its style sheet or its icon.
#[utoipa::path(get, path = "/app/{file}",
    params(("file" = String, Path, description = "The file's name, such as `app.js`.")),
    responses(
        (status = 200, description = "The file, with its content type.", content(
            (String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"))),
        (status = 304, description = "Unchanged since the `If-None-Match` tag."),
        (status = 404, description = "`not_found`: no such file", body = crate::error::Problem,
            content_type = "application/problem+json"),
))]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == file) {
        Some(i) if i > 0 => serve(i, &headers),
        _ => no_such_route(),
    }
}

/// The asset's answer: `304` when the client holds the same version, the
/// bytes otherwise. `no-cache` makes browsers revalidate on each load, so a
/// new release is picked up at once while an unchanged file costs a `304`.
fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(h, CSP);
    response
}

/// The security headers of every page this service serves (the app, the API
/// reference), with the page's own content security policy.
pub fn secure(h: &mut HeaderMap, csp: &'static str) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_first_and_every_script_it_imports_is_embedded() {
        assert_eq!(ASSETS[0].name, "index.html");
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).expect("scripts are UTF-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let file = line
                    .rsplit_once("\"./")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(file, _)| file)
                    .unwrap_or_else(|| panic!("{}: relative import expected: {line}", asset.name));
                assert!(
                    ASSETS.iter().any(|a| a.name == file),
                    "{} imports {file}, which is not embedded",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn the_whole_app_stays_well_under_its_size_budget() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        // Uncompressed: the budget is 200 KB compressed, so this is far inside it.
        assert!(total < 200_000, "the app is {total} bytes");
    }
}
