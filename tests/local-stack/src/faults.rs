//! AWS API faults, as AWS makes them: the client of the fault engine that
//! runs inside the emulator process (`launcher/faults.py`).
//!
//! One engine serves every caller: each function process signs with a
//! session of its own role named after the function, and moto's Step
//! Functions interpreter with one named `ak` (see [`crate::iam`]); the engine
//! names a caller by its session, so a rule can aim at one function, at the
//! state machine's service integrations, or at anyone. Faults are answered in each
//! protocol's own error shape with codes the SDKs classify as throttling or
//! transient, so the functions' code is unchanged.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The caller name of moto's Step Functions interpreter (its role session's
/// name, or its access key id when its role is not installed).
pub const STATE_MACHINE_CALLER: &str = "ak";

/// Who makes the call a rule aims at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// One function, by name (`dev-deployer-ci-dispatch`).
    Function(String),
    /// The deployment state machine's service integrations.
    StateMachine,
    /// The harness's administrator (tests, the CLI in tests, benches).
    Admin,
    Any,
}

impl Caller {
    pub fn function(name: impl Into<String>) -> Self {
        Caller::Function(name.into())
    }

    fn key(&self) -> &str {
        match self {
            Caller::Function(name) => name,
            Caller::StateMachine => STATE_MACHINE_CALLER,
            Caller::Admin => crate::account::ADMIN_ACCESS_KEY,
            Caller::Any => "*",
        }
    }
}

/// What a matching call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The service's throttling error (`ThrottlingException`, `Throttling`,
    /// `ProvisionedThroughputExceededException`, `SlowDown`, 429 …).
    Throttle,
    /// A 500 (S3: 503) the SDKs treat as transient.
    ServerError,
    /// Held this long before it reaches the emulator.
    Delay(Duration),
    /// Takes effect at once; the answer is held this long (a caller that
    /// times out meanwhile never learns the call worked).
    DelayResponse(Duration),
}

impl FaultKind {
    fn name(&self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttle",
            FaultKind::ServerError => "server_error",
            FaultKind::Delay(_) => "delay",
            FaultKind::DelayResponse(_) => "delay_response",
        }
    }
}

/// A named rule: which calls (caller, service signing name, operation; `*`
/// for any; optionally text in the request body), which of them (skip `after`, at most `times`, each with
/// `probability`), and what they get.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub name: String,
    pub caller: Caller,
    pub service: String,
    pub operation: String,
    /// Only calls whose request body contains this text (empty: any).
    pub body_contains: String,
    pub kind: FaultKind,
    pub after: u32,
    pub times: Option<u32>,
    pub probability: f64,
}

impl FaultRule {
    pub fn new(caller: Caller, service: &str, operation: &str, kind: FaultKind) -> Self {
        Self {
            name: format!("{} {service} {operation} {}", caller.key(), kind.name()),
            caller,
            service: service.to_owned(),
            operation: operation.to_owned(),
            body_contains: String::new(),
            kind,
            after: 0,
            times: None,
            probability: 1.0,
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Only calls whose request body contains `text` (one service of many).
    pub fn matching(mut self, text: &str) -> Self {
        self.body_contains = text.to_owned();
        self
    }

    /// Fires at most `n` times.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Lets the first `n` matching calls through.
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }

    /// Fires on a matching call with this probability (the engine's RNG is seeded).
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    fn to_json(&self) -> Value {
        let delay_ms = match self.kind {
            FaultKind::Delay(d) | FaultKind::DelayResponse(d) => d.as_millis() as u64,
            _ => 0,
        };
        json!({
            "name": self.name,
            "caller": self.caller.key(),
            "service": self.service,
            "operation": self.operation,
            "body_contains": self.body_contains,
            "kind": self.kind.name(),
            "delay_ms": delay_ms,
            "after": self.after,
            "times": self.times,
            "probability": self.probability,
        })
    }
}

/// One fault the engine injected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InjectedFault {
    pub rule: String,
    pub kind: String,
    pub caller: String,
    pub service: String,
    pub operation: String,
}

#[derive(Debug, Deserialize)]
struct EngineState {
    injected: Vec<InjectedFault>,
    calls: std::collections::HashMap<String, u64>,
}

/// Controls the emulator's fault engine and CloudFormation's pace.
#[derive(Debug, Clone)]
pub struct Faults {
    endpoint: String,
    http: reqwest::Client,
}

impl Faults {
    pub(crate) fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.endpoint));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{path} on the emulator"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{path} answered {text}"))
    }

    /// Adds a rule; it applies from the next matching call.
    pub async fn add(&self, rule: FaultRule) -> anyhow::Result<()> {
        self.control(
            reqwest::Method::POST,
            "/_deployer/faults",
            Some(rule.to_json()),
        )
        .await
        .map(|_| ())
    }

    /// Removes every rule (what was injected stays on record).
    pub async fn clear(&self) -> anyhow::Result<()> {
        self.control(reqwest::Method::DELETE, "/_deployer/faults", None)
            .await
            .map(|_| ())
    }

    /// Seeds the engine's RNG (rules with a probability below 1).
    pub async fn seed(&self, seed: u64) -> anyhow::Result<()> {
        self.control(
            reqwest::Method::POST,
            "/_deployer/seed",
            Some(json!({"seed": seed})),
        )
        .await
        .map(|_| ())
    }

    /// Every fault injected so far, in order.
    pub async fn injected(&self) -> anyhow::Result<Vec<InjectedFault>> {
        let state: EngineState = serde_json::from_value(
            self.control(reqwest::Method::GET, "/_deployer/faults", None)
                .await?,
        )?;
        Ok(state.injected)
    }

    /// How many calls the engine saw (faulted or not) from `caller` to
    /// `service`'s `operation`.
    pub async fn calls(
        &self,
        caller: &Caller,
        service: &str,
        operation: &str,
    ) -> anyhow::Result<u64> {
        let state: EngineState = serde_json::from_value(
            self.control(reqwest::Method::GET, "/_deployer/faults", None)
                .await?,
        )?;
        Ok(state
            .calls
            .get(&format!("{} {service} {operation}", caller.key()))
            .copied()
            .unwrap_or(0))
    }

    /// Every operation `caller` called on `service` so far, with how often
    /// (faulted or not).
    pub async fn calls_to(
        &self,
        caller: &Caller,
        service: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let state: EngineState = serde_json::from_value(
            self.control(reqwest::Method::GET, "/_deployer/faults", None)
                .await?,
        )?;
        let prefix = format!("{} {service} ", caller.key());
        Ok(state
            .calls
            .into_iter()
            .filter_map(|(key, n)| Some((key.strip_prefix(&prefix)?.to_owned(), n)))
            .collect())
    }

    /// How long CloudFormation keeps change sets pending and stack
    /// operations in progress (zero: it finishes inside the call, as moto does).
    pub async fn set_cloudformation_pace(&self, delay: Duration) -> anyhow::Result<()> {
        self.set_cloudformation_paces(delay, delay).await
    }

    /// Separate paces for change-set creation and for stack operations.
    pub async fn set_cloudformation_paces(
        &self,
        change_sets: Duration,
        stack_operations: Duration,
    ) -> anyhow::Result<()> {
        self.control(
            reqwest::Method::POST,
            "/_deployer/cloudformation",
            Some(json!({
                "delay_ms": stack_operations.as_millis() as u64,
                "change_set_delay_ms": change_sets.as_millis() as u64,
            })),
        )
        .await
        .map(|_| ())
    }
}
