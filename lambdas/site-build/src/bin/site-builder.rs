//! The site-builder Lambda: runs one site build per invocation where
//! nothing privileged can be reached; everything else is in the library
//! ([`site_build::builder::IsolatedBuilder`]).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use site_build::builder::{seal_process, BuildJob, IsolatedBuilder};
use site_build::config::BuilderConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Before anything secret is read: the builds must not read this process.
    seal_process().map_err(|e| format!("cannot make the builder unreadable to builds: {e}"))?;
    let config = BuilderConfig::from_env()?;
    let builder = IsolatedBuilder::new(&config.npm, &config.scratch, config.owns_user)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<BuildJob>| {
        let builder = &builder;
        async move {
            let deadline = tokio::time::Instant::now()
                + event
                    .context
                    .deadline()
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
            Ok::<_, Error>(builder.run(&event.payload, deadline).await)
        }
    }))
    .await
}
