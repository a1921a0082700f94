//! A function for the crate's own tests: a bash custom runtime (the shape
//! of AWS's own shell-runtime example) behind the real Runtime API.
//!
//! It appends every event to `events.log` in its folder, then by payload:
//! `"fail"` → handler error `Boom`; `"flaky"` → an error on the first two
//! attempts, then success; `"sleep"` → answers after a second;
//! `"rawPath":"/respond"` → an HTTP response object; `"midway"` → writes
//! the line `reached midway`, then answers after a second; `"spawn"` →
//! starts `sleep` in a session of its own (pid in `child.pid`) and never
//! answers; otherwise
//! `{"echo": event}`. Request ids go to `ids.log`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::{Function, FunctionSpec};

const SCRIPT: &str = r#"#!/bin/bash
set -u
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
dir="$(dirname "$0")"
while true; do
  headers="$dir/headers.$$"
  event=$(curl -sS -D "$headers" "$api/invocation/next") || exit 1
  id=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | cut -d' ' -f2 | tr -d '\r')
  printf '%s\n' "$event" >> "$dir/events.log"
  printf '%s\n' "$id" >> "$dir/ids.log"
  case "$event" in
    *'"fail"'*)
      curl -sS -o /dev/null -X POST "$api/invocation/$id/error" \
        --data-binary '{"errorType":"Boom","errorMessage":"asked to fail"}' ;;
    *'"flaky"'*)
      n=$(cat "$dir/flaky" 2>/dev/null || echo 0)
      echo $((n + 1)) > "$dir/flaky"
      if [ "$n" -lt 2 ]; then
        curl -sS -o /dev/null -X POST "$api/invocation/$id/error" \
          --data-binary '{"errorType":"Flaky","errorMessage":"not yet"}'
      else
        curl -sS -o /dev/null -X POST "$api/invocation/$id/response" --data-binary '"third time"'
      fi ;;
    *'"sleep"'*)
      sleep 1
      curl -sS -o /dev/null -X POST "$api/invocation/$id/response" --data-binary '"slept"' ;;
    *'"spawn"'*)
      setsid sleep 30 &
      echo $! > "$dir/child.pid"
      sleep 30 ;;
    *'"midway"'*)
      echo "reached midway"
      sleep 1
      curl -sS -o /dev/null -X POST "$api/invocation/$id/response" --data-binary '"finished"' ;;
    *'"rawPath":"/respond"'*)
      curl -sS -o /dev/null -X POST "$api/invocation/$id/response" \
        --data-binary '{"statusCode":201,"headers":{"X-Made":"yes"},"cookies":["c=1; Path=/"],"body":"made"}' ;;
    *)
      curl -sS -o /dev/null -X POST "$api/invocation/$id/response" --data-binary "{\"echo\":$event}" ;;
  esac
done
"#;

/// The script function in its own temp folder (removed on drop).
pub struct ScriptFunction {
    pub function: Arc<Function>,
    pub dir: PathBuf,
}

impl ScriptFunction {
    pub async fn start(name: &str, max_concurrency: usize) -> Self {
        Self::start_with_timeout(name, max_concurrency, Duration::from_secs(10)).await
    }

    pub async fn start_with_timeout(name: &str, max_concurrency: usize, timeout: Duration) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "local-stack-test-fn-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("bootstrap");
        std::fs::write(&binary, SCRIPT).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = FunctionSpec {
            name: name.to_owned(),
            binary,
            env: Vec::new(),
            timeout,
            log_file: None,
            sandbox: None,
        };
        let function = Function::serve_scaled(spec, "us-east-1", max_concurrency)
            .await
            .unwrap();
        Self { function, dir }
    }

    /// The request id of each invocation the function received, oldest first.
    pub fn request_ids(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("ids.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The events the function received, oldest first.
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("events.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl Drop for ScriptFunction {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
