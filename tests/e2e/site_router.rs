//! The cache keys the CloudFront router produces, read by running the
//! router's JavaScript from cloudformation.template under node.
//!
//! CloudFront runs a viewer-request function before it looks in its cache,
//! and the cache key is built from the request the function returns: with
//! the distribution's cache policy (Managed-CachingOptimized) that is the
//! rewritten URI path alone, no query string, header or cookie. The router
//! rewrites every viewer URI into `/deploys/{target}/{deploy_id}/…`, so each
//! deploy's cache keys are new and no viewer path (`/about/`) is ever a key:
//! an invalidation of viewer paths after a publish or a rollback would
//! match nothing (and `/*` would only evict other deploys' objects, which
//! never change), which is why site-build sends none (docs/site-build.md,
//! "Cache").
//!
//! The router imports `cloudfront` for its KeyValueStore; this test gives it
//! a stand-in module of its own whose `kvs().get` reads a map the test sets
//! per case and throws for a missing key, as the runtime does. The events
//! are CloudFront Functions' viewer-request event shape. One test feeds it
//! the KeyValueStore double's items after a real publish and follows each
//! rewritten URI to the object the publish wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const SITE: &str = "example.com";
const STAGING: &str = "staging.example.com";
const PREVIEW: &str = "preview.example.com";
const DISTRIBUTION_DOMAIN: &str = "d111111abcdef8.cloudfront.net";
/// AWS's managed cache policy "CachingOptimized": the cache key holds the
/// URL path only (no query strings, headers or cookies).
const CACHING_OPTIMIZED: &str = "658327ea-f89d-4fab-a63d-7e88639e58f6";

/// The `cloudfront` module as far as the router uses it.
const CLOUDFRONT_STUB: &str = r#"// Test stand-in for CloudFront Functions' 'cloudfront' module: kvs().get
// only, reading the map the test sets in globalThis.__kvs.
export default {
  kvs() {
    return {
      async get(key) {
        const store = globalThis.__kvs || {};
        if (!Object.prototype.hasOwnProperty.call(store, key)) {
          throw new Error('KeyNotFound: ' + key);
        }
        return store[key];
      }
    };
  }
};
"#;

/// Runs each case (`{"kvs": {...}, "event": {...}}`) through the router's
/// handler; answers the request it returns (`{"uri"}`) or its response
/// (`{"status"}`).
const DRIVER: &str = r#"import { handler } from './router.mjs';
let input = '';
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const c of JSON.parse(input)) {
  globalThis.__kvs = c.kvs;
  const result = await handler(c.event);
  out.push(result.statusCode ? { status: result.statusCode } : { uri: result.uri });
}
process.stdout.write(JSON.stringify(out));
"#;

fn template() -> Value {
    let text = std::fs::read_to_string(deployer_e2e::root().join("cloudformation.template"))
        .expect("read cloudformation.template");
    serde_json::from_str(&text).expect("the template is JSON")
}

/// The router's code as CloudFormation deploys it with these domains.
fn router_code(template: &Value) -> String {
    let code = template["Resources"]["SiteRouterFunction"]["Properties"]["FunctionCode"]["Fn::Sub"]
        .as_str()
        .expect("SiteRouterFunction's FunctionCode is one Fn::Sub string");
    let code = code
        .replace("${SiteDomain}", SITE)
        .replace("${StagingDomain}", STAGING)
        .replace("${PreviewDomain}", PREVIEW);
    assert!(
        !code.contains("${"),
        "the router names a template value this test does not substitute"
    );
    code
}

struct RouterDir(PathBuf);

impl RouterDir {
    fn new(code: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("site-router-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let module = dir.join("node_modules/cloudfront");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(
            module.join("package.json"),
            r#"{"name": "cloudfront", "type": "module", "exports": "./index.js"}"#,
        )
        .unwrap();
        std::fs::write(module.join("index.js"), CLOUDFRONT_STUB).unwrap();
        // CloudFront calls the global `handler`; node needs it exported.
        std::fs::write(
            dir.join("router.mjs"),
            format!("{code}\nexport {{ handler }};\n"),
        )
        .unwrap();
        std::fs::write(dir.join("driver.mjs"), DRIVER).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn run(&self, cases: &[Value]) -> Vec<Value> {
        let mut child = Command::new("node")
            .arg("driver.mjs")
            .current_dir(self.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node runs (the site's build needs it too)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(Value::from(cases.to_vec()).to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the router failed under node: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the driver answers JSON")
    }
}

impl Drop for RouterDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CloudFront Functions viewer-request event (event structure version
/// 1.0) for `GET {uri}` on `host`.
fn viewer_request(host: &str, uri: &str, cookies: Value, querystring: Value) -> Value {
    json!({
        "version": "1.0",
        "context": {
            "distributionDomainName": DISTRIBUTION_DOMAIN,
            "endpoint": DISTRIBUTION_DOMAIN,
            "distributionId": "EDFDVBD6EXAMPLE",
            "eventType": "viewer-request",
            "requestId": "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ=="
        },
        "viewer": { "ip": "198.51.100.11" },
        "request": {
            "method": "GET",
            "uri": uri,
            "querystring": querystring,
            "headers": {
                "host": { "value": host },
                "accept": { "value": "text/html,application/xhtml+xml" },
                "user-agent": { "value": "Mozilla/5.0" }
            },
            "cookies": cookies
        }
    })
}

/// Viewer paths of an Astro-like site: pages, directories with and without
/// their slash, hashed and public assets, an encoded name, a missing page,
/// and a query string (not part of the cache key).
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/about/",
    "/about",
    "/about/index.html",
    "/_astro/index.3f9a1c2b.js",
    "/assets/app-BQ4ZtN2k.css",
    "/img/logo.png",
    "/%C3%BCber%20uns/",
    "/robots.txt",
    "/no-such-page",
];

/// How a viewer reaches a target, the target, and its event for a path.
type Viewer = (&'static str, &'static str, Box<dyn Fn(&str) -> Value>);

fn viewers() -> Vec<Viewer> {
    vec![
        (
            "site domain",
            "production",
            Box::new(|p| viewer_request(SITE, p, json!({}), json!({}))),
        ),
        (
            "staging domain",
            "staging",
            Box::new(|p| viewer_request(STAGING, p, json!({}), json!({}))),
        ),
        (
            "preview domain",
            "preview/feature-login",
            Box::new(|p| {
                viewer_request(&format!("feature-login.{PREVIEW}"), p, json!({}), json!({}))
            }),
        ),
        (
            "distribution name, target cookie",
            "staging",
            Box::new(|p| {
                viewer_request(
                    DISTRIBUTION_DOMAIN,
                    p,
                    json!({"site-target": {"value": "staging"}}),
                    json!({"utm_source": {"value": "mail"}}),
                )
            }),
        ),
        (
            "distribution name",
            "production",
            Box::new(|p| viewer_request(DISTRIBUTION_DOMAIN, p, json!({}), json!({}))),
        ),
    ]
}

#[test]
fn every_deploy_has_cache_keys_of_its_own_so_nothing_needs_invalidating() {
    let template = template();
    // The cache key is the path the router returns only under this policy,
    // with the router at viewer request on the one cache behaviour.
    let distribution =
        &template["Resources"]["SiteDistribution"]["Properties"]["DistributionConfig"];
    let behaviour = &distribution["DefaultCacheBehavior"];
    assert_eq!(behaviour["CachePolicyId"], CACHING_OPTIMIZED);
    assert_eq!(
        behaviour["FunctionAssociations"],
        json!([{"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": ["SiteRouterFunction", "FunctionARN"]}}])
    );
    assert!(
        distribution.get("CacheBehaviors").is_none(),
        "another cache behaviour would need its own look at its cache keys"
    );
    // Nothing in the stack may invalidate any more.
    assert!(
        !serde_json::to_string(&template["Resources"])
            .unwrap()
            .contains("cloudfront:CreateInvalidation"),
        "a role still allows cloudfront:CreateInvalidation"
    );

    let router = RouterDir::new(&router_code(&template));
    let deploys = ["2qJ8aK3bX0m1N2o3P4q5R6s7T8u", "2qJ8bZ9cY1n2O3p4Q5r6S7t8U9v"];
    let viewers = viewers();
    // One key per (deploy, viewer, path).
    let mut keys: BTreeMap<(usize, usize, &str), String> = BTreeMap::new();
    for (d, deploy) in deploys.iter().enumerate() {
        let kvs: BTreeMap<&str, &str> = ["production", "staging", "preview/feature-login"]
            .into_iter()
            .map(|t| (t, *deploy))
            .collect();
        let cases: Vec<Value> = viewers
            .iter()
            .flat_map(|(_, _, event)| PATHS.iter().map(move |p| event(p)))
            .map(|event| json!({"kvs": kvs, "event": event}))
            .collect();
        let results = router.run(&cases);
        assert_eq!(results.len(), cases.len());
        let mut results = results.into_iter();
        for (v, (how, target, _)) in viewers.iter().enumerate() {
            for path in PATHS {
                let result = results.next().unwrap();
                let uri = result["uri"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{how} {path}: no rewrite: {result}"));
                let prefix = format!("/deploys/{target}/{deploy}/");
                assert!(
                    uri.starts_with(&prefix),
                    "{how} {path}: {uri} is not under {prefix}"
                );
                keys.insert((d, v, path), uri.to_owned());
            }
        }
    }

    // The same viewer URL gets a new key in the next deploy, for every path.
    for v in 0..viewers.len() {
        for path in PATHS {
            assert_ne!(keys[&(0, v, *path)], keys[&(1, v, *path)], "{path}");
        }
    }
    let of = |d: usize| -> BTreeSet<&str> {
        keys.iter()
            .filter(|((deploy, _, _), _)| *deploy == d)
            .map(|(_, key)| key.as_str())
            .collect()
    };
    assert!(of(0).is_disjoint(&of(1)), "two deploys share a cache key");
    // No viewer path is ever a cache key: invalidating `/about/` removes
    // nothing. (`/*` would remove every deploy's objects, all of them still
    // correct, since a deploy never changes: it only costs refetches.)
    for key in keys.values() {
        assert!(!PATHS.contains(&key.as_str()), "{key} is a viewer path");
        assert!(key.starts_with("/deploys/"), "{key}");
    }
    // Directory URLs map onto their index, so they share its key.
    for v in 0..viewers.len() {
        assert_eq!(keys[&(0, v, "/about/")], keys[&(0, v, "/about/index.html")]);
        assert_eq!(keys[&(0, v, "/about")], keys[&(0, v, "/about/index.html")]);
    }

    // Nothing published for a target: the router answers itself (404,
    // never cached: `no-store`); no key is made.
    let empty =
        router.run(&[json!({"kvs": {}, "event": viewer_request(SITE, "/", json!({}), json!({}))})]);
    assert_eq!(empty, [json!({"status": 404})]);
}

/// The router against the data a publish leaves: the KeyValueStore
/// double's items after site-build's Publisher and LiveStore have published
/// production and staging. Every URI the router rewrites to is an object
/// the publish wrote, holding the page the local site server serves for
/// the same viewer path.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_router_resolves_what_a_publish_wrote_from_the_stores_data() {
    use deployer_e2e::TestStack;
    use local_stack::HostTarget;
    use site_build::live_store::LiveStore;
    use site_build::Publisher;
    use sitedao::PublishTarget;

    let stack = TestStack::start("routerdata", &[]).await;
    let p = &stack.pipeline;
    let config = p.function_sdk_config("SiteBuildFunction").await.unwrap();
    let store = LiveStore::new(
        aws_sdk_cloudfrontkeyvaluestore::Client::from_conf(
            aws_sdk_cloudfrontkeyvaluestore::config::Builder::from(&config)
                .endpoint_url(p.kvs.endpoint_url())
                .build(),
        ),
        &p.kvs.arn,
    );
    let s3 = aws_sdk_s3::Client::new(&config);
    let bucket = &p.site_resources.bucket;
    let publisher = Publisher::new(s3.clone(), bucket);
    let root = std::env::temp_dir().join(format!("router-data-{}", std::process::id()));
    for (target, label) in [
        (PublishTarget::Production, "production"),
        (PublishTarget::Staging, "staging"),
    ] {
        let dir = root.join(label);
        for (path, body) in [
            ("index.html", format!("{label} home")),
            ("about/index.html", format!("{label} about")),
            ("robots.txt", format!("{label} robots")),
        ] {
            std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
            std::fs::write(dir.join(path), body).unwrap();
        }
        publisher.publish(&target, &dir).await.unwrap();
        store.sync(&publisher, &target).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);

    let kvs = p.kvs.items();
    assert_eq!(kvs.len(), 2, "{kvs:?}");
    let router = RouterDir::new(&router_code(&template()));
    let cases = [
        (SITE, HostTarget::Production, "/", "production home"),
        (SITE, HostTarget::Production, "/about", "production about"),
        (SITE, HostTarget::Production, "/about/", "production about"),
        (
            SITE,
            HostTarget::Production,
            "/robots.txt",
            "production robots",
        ),
        (STAGING, HostTarget::Staging, "/", "staging home"),
        (STAGING, HostTarget::Staging, "/about/", "staging about"),
    ];
    let events: Vec<Value> = cases
        .iter()
        .map(|(host, _, path, _)| {
            json!({"kvs": kvs, "event": viewer_request(host, path, json!({}), json!({}))})
        })
        .collect();
    let results = router.run(&events);
    for ((_, target, path, expected), result) in cases.iter().zip(results) {
        let uri = result["uri"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no rewrite: {result}"));
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(&uri[1..])
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} → {uri}: no such object: {e:?}"));
        let body = object.body.collect().await.unwrap().into_bytes();
        assert_eq!(String::from_utf8_lossy(&body), *expected, "{path} → {uri}");
        let served = p.site.get(target, path).await.unwrap();
        assert_eq!(served.text(), *expected, "the site server, {path}");
    }
}
