//! A loopback stand-in for the site's CloudFront distribution and its
//! viewer-request router (`SiteRouterFunction` in the template).
//!
//! The router's rules are followed as written, with `localhost`,
//! `staging.localhost` and `preview.localhost` as the site, staging and
//! preview domains: `{slug}.preview.localhost:PORT` → `preview/{slug}`
//! (a slug that is not one DNS label: 404), `staging.localhost:PORT` →
//! `staging`, `localhost:PORT` → `production`; any other host (such as
//! `127.0.0.1:PORT`, the distribution's own name in AWS) → production, or
//! the target picked with `?site-target=TARGET` (a 302 that sets the
//! `site-target` cookie). `/` and `/dir/` are `index.html`, a last segment
//! without a dot is `{path}/index.html`.
//!
//! It reads the live deploy id from the KeyValueStore double as the router
//! reads it from the KeyValueStore (`kvs.get(target)`, a value that is not
//! a deploy id is the router's 404) and fetches
//! `deploys/{target}/{deploy_id}{rewritten uri}` from the bucket as the
//! distribution's origin request does. A target with nothing live is the
//! router's 404, a file the live deploy lacks is the
//! 403 S3 answers CloudFront (it may not list the bucket). Files are served
//! with the `Content-Type` and `Cache-Control` stored on the object (the
//! manifest's, which the publisher writes on it) and the headers of the
//! distribution's managed security-headers policy. Browsers and curl
//! resolve `*.localhost` to loopback, so the URLs work as they are.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use site_build::ResolvedObject;

use crate::kvs::KvsDouble;
use crate::lambda_api::AbortOnDrop;

/// The target a Host header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    Production,
    Staging,
    Preview(String),
}

impl HostTarget {
    /// `production`, `staging` or `preview/{slug}`, as in bucket keys.
    pub fn name(&self) -> String {
        match self {
            HostTarget::Production => "production".into(),
            HostTarget::Staging => "staging".into(),
            HostTarget::Preview(slug) => format!("preview/{slug}"),
        }
    }
}

/// The local site, staging and preview domains (`SiteDomain`,
/// `StagingDomain`, `PreviewDomain` in the template).
pub const SITE_DOMAIN: &str = "localhost";
pub const STAGING_DOMAIN: &str = "staging.localhost";
pub const PREVIEW_DOMAIN: &str = "preview.localhost";

/// What the router makes of a Host header (port ignored: CloudFront's Host
/// has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Target(HostTarget),
    /// Under the preview domain, but not one slug.
    NoSuchPreview,
    /// Not one of the site's domains: `?site-target=` / cookie / production.
    Other,
}

/// Maps a Host header as the router function's `hostTarget` does.
pub fn match_host(host: &str) -> HostMatch {
    let host = host.trim().to_ascii_lowercase();
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map(|(name, _)| name)
        .unwrap_or(&host);
    if name == SITE_DOMAIN {
        return HostMatch::Target(HostTarget::Production);
    }
    if name == STAGING_DOMAIN {
        return HostMatch::Target(HostTarget::Staging);
    }
    if let Some(slug) = name.strip_suffix(&format!(".{PREVIEW_DOMAIN}")) {
        return if is_slug(slug) {
            HostMatch::Target(HostTarget::Preview(slug.to_owned()))
        } else {
            HostMatch::NoSuchPreview
        };
    }
    HostMatch::Other
}

/// The target a Host header names when nothing else chooses: previews,
/// staging, else production.
pub fn target_for_host(host: &str) -> HostTarget {
    match match_host(host) {
        HostMatch::Target(target) => target,
        HostMatch::NoSuchPreview | HostMatch::Other => HostTarget::Production,
    }
}

/// The router's `SLUG`: `^[a-z0-9-]{1,63}$`.
fn is_slug(slug: &str) -> bool {
    (1..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The router's `TARGET`: `production`, `staging` or `preview/{slug}`.
fn parse_target(value: &str) -> Option<HostTarget> {
    match value {
        "production" => Some(HostTarget::Production),
        "staging" => Some(HostTarget::Staging),
        other => other
            .strip_prefix("preview/")
            .filter(|slug| is_slug(slug))
            .map(|slug| HostTarget::Preview(slug.to_owned())),
    }
}

/// The router's URI rewrite: `/` and `/dir/` → `index.html`; a last
/// segment without a dot → `{path}/index.html`.
pub fn rewrite_uri(uri: &str) -> String {
    if uri.ends_with('/') {
        format!("{uri}index.html")
    } else if !uri.rsplit('/').next().unwrap_or_default().contains('.') {
        format!("{uri}/index.html")
    } else {
        uri.to_owned()
    }
}

struct SiteState {
    s3: aws_sdk_s3::Client,
    bucket: String,
    /// Where the live deploy ids come from, as for the router.
    store: KvsDouble,
}

/// The site's viewer-facing server on loopback.
#[derive(Clone)]
pub struct SiteServer {
    pub port: u16,
    pub bucket: String,
    _server: Arc<AbortOnDrop>,
}

impl SiteServer {
    /// Serves the deploys in `bucket` that `store` names live, as the
    /// router function and the distribution do, on a free loopback port
    /// (IPv4, and IPv6 on the same port where the machine has it).
    pub async fn start(
        s3: aws_sdk_s3::Client,
        bucket: &str,
        store: KvsDouble,
    ) -> anyhow::Result<Self> {
        let state = Arc::new(SiteState {
            s3,
            bucket: bucket.to_owned(),
            store,
        });
        let app = Router::new().fallback(serve).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mut tasks = Vec::new();
        // `localhost` names may resolve to ::1 first; answer there too.
        if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(v6, app).await;
            }));
        }
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        Ok(Self {
            port,
            bucket: bucket.to_owned(),
            _server: Arc::new(AbortOnDrop(tasks)),
        })
    }

    /// `http://localhost:PORT/`
    pub fn production_url(&self) -> String {
        format!("http://localhost:{}/", self.port)
    }

    /// `http://staging.localhost:PORT/`
    pub fn staging_url(&self) -> String {
        format!("http://staging.localhost:{}/", self.port)
    }

    /// `http://{slug}.preview.localhost:PORT/`
    pub fn preview_url_template(&self) -> String {
        format!("http://{{slug}}.preview.localhost:{}/", self.port)
    }

    /// The preview URL of one slug.
    pub fn preview_url(&self, slug: &str) -> String {
        self.preview_url_template().replace("{slug}", slug)
    }

    /// The URL of `path` on a target, as a viewer would ask for it.
    pub fn url_of(&self, target: &HostTarget, path: &str) -> String {
        let base = match target {
            HostTarget::Production => self.production_url(),
            HostTarget::Staging => self.staging_url(),
            HostTarget::Preview(slug) => self.preview_url(slug),
        };
        format!("{}{}", base.trim_end_matches('/'), path)
    }

    /// Requests `path` from `target` through this server, with the Host
    /// header a browser would send (no `*.localhost` resolution needed).
    pub async fn get(&self, target: &HostTarget, path: &str) -> anyhow::Result<SitePage> {
        let url = self.url_of(target, path);
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .header("host", host)
            .send()
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(SitePage {
            status: response.status().as_u16(),
            content_type: header("content-type"),
            cache_control: header("cache-control"),
            deploy_id: header("x-deploy-id"),
            body: response.bytes().await?.to_vec(),
        })
    }
}

/// One response of the site server.
#[derive(Debug, Clone)]
pub struct SitePage {
    pub status: u16,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    /// The live deploy that answered (a local-only header).
    pub deploy_id: Option<String>,
    pub body: Vec<u8>,
}

impl SitePage {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The managed `SecurityHeadersPolicy` the distribution attaches.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("strict-transport-security", "max-age=31536000"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("x-xss-protection", "1; mode=block"),
];

fn router_page(status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-store"),
        ],
        text.to_owned(),
    )
        .into_response()
}

/// What S3 answers CloudFront for a key it may not list.
fn access_denied() -> Response {
    (
        StatusCode::FORBIDDEN,
        [("content-type", "application/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
    )
        .into_response()
}

/// The value of one cookie in a Cookie header.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

async fn serve(State(state): State<Arc<SiteState>>, request: Request<Body>) -> Response {
    let mut response = route(&state, request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

async fn route(state: &SiteState, request: Request<Body>) -> Response {
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        // The distribution allows GET and HEAD only.
        return (
            StatusCode::FORBIDDEN,
            "This distribution is not configured to allow the HTTP request method that was used for this request.",
        )
            .into_response();
    }
    let host = request
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let uri = request.uri().path().to_owned();
    let target = match match_host(&host) {
        HostMatch::Target(target) => target,
        HostMatch::NoSuchPreview => {
            return router_page(
                StatusCode::NOT_FOUND,
                &format!("No preview is published at {host}\n"),
            )
        }
        HostMatch::Other => {
            let wanted = request
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "site-target")
                .map(|(_, v)| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .filter(|v| !v.is_empty());
            if let Some(wanted) = wanted {
                if parse_target(&wanted).is_none() {
                    return router_page(
                        StatusCode::BAD_REQUEST,
                        "site-target must be production, staging or preview/{slug}\n",
                    );
                }
                let forget = if wanted == "production" {
                    "; Max-Age=0"
                } else {
                    ""
                };
                return (
                    StatusCode::FOUND,
                    [
                        ("location", uri.clone()),
                        ("cache-control", "no-store".to_owned()),
                        (
                            "set-cookie",
                            format!(
                                "site-target={wanted}; Path=/; Secure; HttpOnly; SameSite=Lax{forget}"
                            ),
                        ),
                    ],
                )
                    .into_response();
            }
            cookie(request.headers(), "site-target")
                .and_then(|chosen| parse_target(&chosen))
                .unwrap_or(HostTarget::Production)
        }
    };
    let rewritten = rewrite_uri(&uri);
    let resolved = match resolve(&state.store, &target, &rewritten) {
        Resolution::Found(found) => found,
        Resolution::NotLive => {
            return router_page(
                StatusCode::NOT_FOUND,
                &format!("Nothing is published for {}\n", target.name()),
            )
        }
        Resolution::NoSuchFile => return access_denied(),
    };
    let object = match state
        .s3
        .get_object()
        .bucket(&state.bucket)
        .key(&resolved.key)
        .send()
        .await
    {
        Ok(object) => object,
        Err(err) => {
            if err.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                return access_denied();
            }
            return (StatusCode::BAD_GATEWAY, format!("{err:?}")).into_response();
        }
    };
    let header = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""));
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        header(object.content_type().unwrap_or(&resolved.content_type)),
    );
    if let Some(cache_control) = object
        .cache_control()
        .or(Some(resolved.cache_control.as_str()))
        .filter(|v| !v.is_empty())
    {
        headers.insert("cache-control", header(cache_control));
    }
    if let Some(etag) = object.e_tag() {
        headers.insert("etag", header(etag));
    }
    headers.insert("x-deploy-id", header(&resolved.deploy_id));
    let bytes = match object.body.collect().await {
        Ok(data) => data.into_bytes(),
        Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    };
    if method == Method::HEAD {
        headers.insert("content-length", header(&bytes.len().to_string()));
        return (StatusCode::OK, headers).into_response();
    }
    (StatusCode::OK, headers, bytes).into_response()
}

/// What the live deploy of a target holds for a rewritten URI.
enum Resolution {
    Found(ResolvedObject),
    NotLive,
    NoSuchFile,
}

/// The file of `target`'s live deploy at the rewritten URI `uri` (exactly
/// that file: the router has already added any `index.html`).
/// The router's `DEPLOY_ID`: `^[A-Za-z0-9_-]{1,64}$`.
fn is_deploy_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The file of `target`'s live deploy at the rewritten URI `uri` (exactly
/// that file: the router has already added any `index.html`). As the
/// router: the store names the live deploy, and the rewritten URI is the
/// object key under it (S3 decodes the path CloudFront forwards).
fn resolve(store: &KvsDouble, target: &HostTarget, uri: &str) -> Resolution {
    let Some(deploy_id) = store.get(&target.name()).filter(|id| is_deploy_id(id)) else {
        return Resolution::NotLive;
    };
    let Ok(path) = percent_encoding::percent_decode_str(uri).decode_utf8() else {
        return Resolution::NoSuchFile;
    };
    let path = path.trim_start_matches('/').to_owned();
    Resolution::Found(ResolvedObject {
        key: format!("deploys/{}/{deploy_id}/{path}", target.name()),
        deploy_id,
        path,
        content_type: "binary/octet-stream".to_owned(),
        cache_control: String::new(),
        sha256: String::new(),
        size: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use site_build::Publisher;
    use sitedao::{PreviewSlug, PublishTarget};

    #[test]
    fn hosts_map_as_the_router_maps_them() {
        let target = |t: HostTarget| HostMatch::Target(t);
        assert_eq!(match_host("localhost:8080"), target(HostTarget::Production));
        assert_eq!(
            match_host("staging.localhost:8080"),
            target(HostTarget::Staging)
        );
        assert_eq!(match_host("Staging.LocalHost"), target(HostTarget::Staging));
        assert_eq!(
            match_host("feature-login-1a2b3c4d.preview.localhost:8080"),
            target(HostTarget::Preview("feature-login-1a2b3c4d".into()))
        );
        assert_eq!(
            match_host("docs.preview.localhost"),
            target(HostTarget::Preview("docs".into()))
        );
        assert_eq!(
            match_host("a.b.preview.localhost:1"),
            HostMatch::NoSuchPreview
        );
        assert_eq!(match_host("127.0.0.1:8080"), HostMatch::Other);
        assert_eq!(match_host(""), HostMatch::Other);
        assert_eq!(target_for_host("127.0.0.1:8080"), HostTarget::Production);
        assert_eq!(
            target_for_host("x.preview.localhost:1"),
            HostTarget::Preview("x".into())
        );
        assert_eq!(HostTarget::Preview("docs".into()).name(), "preview/docs");
    }

    #[test]
    fn uris_are_rewritten_as_the_router_rewrites_them() {
        assert_eq!(rewrite_uri("/"), "/index.html");
        assert_eq!(rewrite_uri("/about/"), "/about/index.html");
        assert_eq!(rewrite_uri("/about"), "/about/index.html");
        assert_eq!(
            rewrite_uri("/assets/app.3f9a1c2b.css"),
            "/assets/app.3f9a1c2b.css"
        );
        assert_eq!(rewrite_uri("/v1.2"), "/v1.2");
        assert_eq!(
            parse_target("preview/feature-x"),
            Some(HostTarget::Preview("feature-x".into()))
        );
        assert_eq!(parse_target("preview/a/b"), None);
        assert_eq!(parse_target("live"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_live_deploys_as_the_distribution_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let emulator = crate::Emulator::start(&root, None)
            .await
            .expect("moto server starts (make setup)");
        let s3 = aws_sdk_s3::Client::new(&emulator.sdk_config().await);
        s3.create_bucket().bucket("site").send().await.unwrap();
        let site_dir =
            std::env::temp_dir().join(format!("site-server-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&site_dir);
        std::fs::create_dir_all(site_dir.join("about")).unwrap();
        std::fs::create_dir_all(site_dir.join("assets")).unwrap();
        std::fs::write(site_dir.join("index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(site_dir.join("about/index.html"), "<h1>about</h1>").unwrap();
        std::fs::write(site_dir.join("assets/app.3f9a1c2b.css"), "h1{}").unwrap();
        let publisher = Publisher::new(s3.clone(), "site");
        let branch = "Feature/Login";
        let slug = PreviewSlug::from_branch(branch).to_string();
        assert_ne!(slug, "feature-login", "a hashed slug");
        // Published as site-build publishes, and named live in the store
        // as site-build names it.
        let store = KvsDouble::start("site-server-test").await.unwrap();
        for target in [PublishTarget::Production, PublishTarget::preview(branch)] {
            let published = publisher.publish(&target, &site_dir).await.unwrap();
            store.put_directly(&target.name(), &published.deploy_id);
        }
        std::fs::remove_dir_all(&site_dir).unwrap();
        let server = SiteServer::start(s3, "site", store).await.unwrap();

        let page = server.get(&HostTarget::Production, "/").await.unwrap();
        assert_eq!((page.status, page.text().as_str()), (200, "<h1>home</h1>"));
        assert_eq!(
            page.content_type.as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            page.cache_control.as_deref(),
            Some("public, max-age=0, must-revalidate")
        );
        assert!(page.deploy_id.is_some());
        let page = server.get(&HostTarget::Production, "/about").await.unwrap();
        assert_eq!(page.text(), "<h1>about</h1>");
        let page = server
            .get(&HostTarget::Production, "/assets/app.3f9a1c2b.css")
            .await
            .unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(
            page.cache_control.as_deref(),
            Some("public, max-age=31536000, immutable")
        );
        // A file the deploy lacks: S3's 403 to CloudFront.
        let page = server
            .get(&HostTarget::Production, "/nope.html")
            .await
            .unwrap();
        assert_eq!(page.status, 403, "{}", page.text());
        // A preview with a hashed slug.
        let preview = HostTarget::Preview(slug.clone());
        let page = server.get(&preview, "/about/").await.unwrap();
        assert_eq!((page.status, page.text().as_str()), (200, "<h1>about</h1>"));
        // Nothing live: the router's 404.
        let page = server.get(&HostTarget::Staging, "/").await.unwrap();
        assert_eq!(page.status, 404);
        assert_eq!(page.text(), "Nothing is published for staging\n");
        let page = server
            .get(&HostTarget::Preview("gone".into()), "/")
            .await
            .unwrap();
        assert_eq!(page.text(), "Nothing is published for preview/gone\n");

        // The distribution's own host: ?site-target= picks, a cookie keeps it.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let own = format!("http://127.0.0.1:{}", server.port);
        let switched = http
            .get(format!("{own}/about/?site-target=preview/{slug}"))
            .send()
            .await
            .unwrap();
        assert_eq!(switched.status(), 302);
        assert_eq!(switched.headers()["location"], "/about/");
        assert_eq!(
            switched.headers()["set-cookie"],
            format!("site-target=preview/{slug}; Path=/; Secure; HttpOnly; SameSite=Lax").as_str()
        );
        let page = http
            .get(format!("{own}/about/"))
            .header("cookie", format!("site-target=preview/{slug}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.headers()["x-frame-options"], "SAMEORIGIN");
        assert_eq!(page.text().await.unwrap(), "<h1>about</h1>");
        let bad = http
            .get(format!("{own}/?site-target=elsewhere"))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let home = http.get(format!("{own}/")).send().await.unwrap();
        assert_eq!(home.text().await.unwrap(), "<h1>home</h1>");
        let head = http.head(format!("{own}/")).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"], "13");
        let post = http.post(format!("{own}/")).send().await.unwrap();
        assert_eq!(post.status(), 403);
    }
}
