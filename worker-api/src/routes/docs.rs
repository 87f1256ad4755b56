//! `GET /docs/`: the API reference, Swagger UI reading `/openapi.json`, served
//! from files embedded in the binary (nothing is fetched from elsewhere) with
//! the same security headers as the web app and a policy Swagger UI can run
//! under: its own scripts only, inline styles (its components set them), and
//! `data:` images (its icons).

use crate::error::Problem;
use crate::routes::no_such_route;
use crate::web::secure;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, OnceLock};
use utoipa_swagger_ui::Config;

/// Swagger UI's policy: scripts from here only, inline styles, `data:`
/// images and fonts, requests to this origin only (the document and "try it
/// out"), never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                   object-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

/// Swagger UI's settings: the document of this service, and no online
/// validator badge (that would call an outside host).
fn config() -> Arc<Config<'static>> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                Config::from("/openapi.json")
                    .validator_url("none")
                    .try_it_out_enabled(true)
                    .persist_authorization(false),
            )
        })
        .clone()
}

/// `GET /docs/`: Swagger UI's page.
#[utoipa::path(get, path = "/docs/", responses(
    (status = 200, description = "The API reference's page.", body = String, content_type = "text/html"),
))]
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /docs/{file}`: one of Swagger UI's scripts, style sheets or icons.
#[utoipa::path(get, path = "/docs/{file}",
    params(("file" = String, Path, description = "The file's name, such as `swagger-ui.css`.")),
    responses(
        (status = 200, description = "The file, with its content type.", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/html"),
            (String = "image/png"))),
        (status = 404, description = "`not_found`: no such file", body = Problem,
            content_type = "application/problem+json"),
))]
pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(file: &str) -> Response {
    let found = match utoipa_swagger_ui::serve(file, config()) {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "Swagger UI's settings could not be written");
            None
        }
    };
    let Some(found) = found else {
        return no_such_route();
    };
    let content_type = HeaderValue::from_str(&found.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = found.bytes.into_owned().into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    if found.gzpipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(h, CSP);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn the_page_and_its_scripts_are_embedded_and_read_our_document() {
        let page = index().await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let init = asset(Path("swagger-initializer.js".into())).await;
        assert_eq!(init.status(), StatusCode::OK);
        let body = axum::body::to_bytes(init.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("/openapi.json"), "{text}");
        assert!(
            !text.contains("https://"),
            "Swagger UI must call no outside host: {text}"
        );
        let missing = asset(Path("nothing.js".into())).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
