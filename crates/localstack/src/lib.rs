//! The local stack: the whole suite on one machine against an AWS API
//! emulator. Tests and `make demo` use the same code.

pub mod delivery;
pub mod emulator;
pub mod http_doubles;
pub mod pipeline;
pub mod runtime;
pub mod wiring;

pub use emulator::Emulator;
pub use http_doubles::{FaultProxy, SinkMode, WebhookSink};
pub use pipeline::{Pipeline, PipelineOptions, Resources};
pub use runtime::{Function, FunctionSpec, InvokeError};
