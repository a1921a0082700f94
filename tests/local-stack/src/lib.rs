//! The local stack: the whole suite on one machine against an AWS API
//! emulator. Tests and `make demo` use the same code.

pub mod account;
pub mod chaos;
pub mod delivery;
pub mod demo;
pub mod emulator;
pub mod faults;
pub mod function_url;
pub mod github;
pub mod http_doubles;
pub mod iam;
pub mod kvs;
pub mod lambda_api;
pub mod pipeline;
pub mod runtime;
pub mod sample_repo;
pub mod site_server;
pub mod slow_s3;
#[cfg(test)]
mod test_function;
pub mod wiring;

pub use account::RoleCredentials;
pub use emulator::{Emulator, RolloutEnd};
pub use faults::{Caller, FaultKind, FaultRule, Faults, InjectedFault};
pub use function_url::FunctionUrlServer;
pub use github::{Deployment, DeploymentStatus, GitHubDouble, GitHubOptions};
pub use http_doubles::{HealthEndpoint, RecordingProxy, SinkMode, WebhookSink};
pub use iam::FunctionRoles;
pub use kvs::KvsDouble;
pub use lambda_api::{AsyncInvocation, AsyncState, LambdaApi};
pub use pipeline::{Pipeline, PipelineOptions, Resources, SiteResources};
pub use runtime::{Function, FunctionSpec, InvokeError, Sandbox};
pub use sample_repo::SampleRepo;
pub use site_server::{HostTarget, SitePage, SiteServer};
