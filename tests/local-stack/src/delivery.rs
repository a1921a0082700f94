//! Event delivery the way AWS does it, for the events moto cannot deliver
//! to a function without Docker.
//!
//! - S3 notifications: moto sends the bucket's events to an SQS queue the
//!   local stack owns; each is completed to the exact AWS record shape and
//!   invoked asynchronously (two retries on error, as Lambda does).
//! - DynamoDB streams: records are read with GetRecords and delivered in
//!   batches with the event source mapping's batch size, retry budget,
//!   bisection and ReportBatchItemFailures semantics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{info, warn};

use crate::account::REGION;
use crate::emulator::Emulator;
use crate::runtime::{Function, InvokeError};
use crate::wiring::StreamMapping;

/// Events that ran out of retries: what AWS sends to an on-failure destination.
#[derive(Debug, Default, Clone)]
pub struct DeadLetters(Arc<Mutex<Vec<Value>>>);

impl DeadLetters {
    pub fn push(&self, value: Value) {
        self.0.lock().expect("dead letters lock").push(value);
    }
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().expect("dead letters lock").clone()
    }
}

/// Every event delivered to a function, in order: what tests replay.
#[derive(Debug, Default, Clone)]
pub struct DeliveryLog(Arc<Mutex<Vec<(String, Value)>>>);

impl DeliveryLog {
    pub fn record(&self, function: &str, event: &Value) {
        self.0
            .lock()
            .expect("delivery log lock")
            .push((function.to_owned(), event.clone()));
    }
    /// Events delivered to `function`, oldest first.
    pub fn events(&self, function: &str) -> Vec<Value> {
        self.0
            .lock()
            .expect("delivery log lock")
            .iter()
            .filter(|(f, _)| f == function)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

static SEQUENCER: AtomicU64 = AtomicU64::new(0);

/// Completes moto's S3 event record with the fields AWS always sends and
/// moto leaves out (userIdentity, requestParameters, responseElements,
/// bucket ownerIdentity, object sequencer).
pub fn complete_s3_record(mut record: Value) -> Value {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let sequence = nanos.max(SEQUENCER.fetch_add(1, Ordering::SeqCst) + 1);
    SEQUENCER.fetch_max(sequence, Ordering::SeqCst);
    let request_id = format!("{:016X}", sequence);
    let fill = |target: &mut Value, key: &str, value: Value| {
        if let Some(map) = target.as_object_mut() {
            map.entry(key.to_owned()).or_insert(value);
        }
    };
    fill(
        &mut record,
        "userIdentity",
        json!({"principalId": "AWS:AIDALOCALSTACKEXAMPLE"}),
    );
    fill(
        &mut record,
        "requestParameters",
        json!({"sourceIPAddress": "127.0.0.1"}),
    );
    fill(
        &mut record,
        "responseElements",
        json!({"x-amz-request-id": request_id, "x-amz-id-2": format!("local/{request_id}")}),
    );
    if let Some(bucket) = record.pointer_mut("/s3/bucket") {
        fill(
            bucket,
            "ownerIdentity",
            json!({"principalId": "A3LOCALSTACKOWNER"}),
        );
    }
    if let Some(object) = record.pointer_mut("/s3/object") {
        fill(object, "sequencer", json!(format!("{:016X}", sequence)));
    }
    record
}

/// Invokes a function the way Lambda runs asynchronous invocations: on a
/// function error it retries twice (AWS waits about 1 and 2 minutes; the
/// local stack waits `retry_delay` and twice that), then gives up to the
/// dead letters.
pub async fn invoke_async(
    function: &Function,
    event: &Value,
    retry_delay: Duration,
    dead: &DeadLetters,
    log: &DeliveryLog,
) {
    // One request id for the invocation and its retries, as Lambda keeps it.
    let request_id = function.new_request_id();
    for attempt in 0..3u32 {
        log.record(function.name(), event);
        match function.invoke_as(&request_id, event).await {
            Ok(_) => return,
            Err(err) => {
                warn!(function = function.name(), attempt, error = %err, "asynchronous invocation failed");
                if attempt < 2 {
                    tokio::time::sleep(retry_delay * (attempt + 1)).await;
                }
            }
        }
    }
    dead.push(json!({"function": function.name(), "event": event}));
}

/// How a queued message becomes the event a function receives.
pub type Shape = fn(Value) -> Option<Value>;

/// S3 notifications: moto's body, completed to the AWS record shape.
pub fn s3_notification(body: Value) -> Option<Value> {
    let records = body.get("Records")?.as_array()?;
    Some(json!({"Records": records.iter().cloned().map(complete_s3_record).collect::<Vec<_>>()}))
}

/// EventBridge events: the body is the event as the target receives it.
pub fn eventbridge_event(body: Value) -> Option<Value> {
    body.get("detail-type").is_some().then_some(body)
}

/// Polls a local queue the emulator fills and invokes `function`
/// asynchronously with each message, shaped by `shape`.
pub async fn run_queue_delivery(
    emulator: Arc<Emulator>,
    queue_url: String,
    function: Arc<Function>,
    shape: Shape,
    retry_delay: Duration,
    dead: DeadLetters,
    log: DeliveryLog,
) {
    loop {
        let received = emulator
            .json_call(
                "sqs",
                "AmazonSQS.ReceiveMessage",
                json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0}),
            )
            .await;
        let messages = match received {
            Ok(value) => value
                .get("Messages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            Err(err) => {
                warn!(error = %err, queue = %queue_url, "reading a local delivery queue failed");
                Vec::new()
            }
        };
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(150)).await;
            continue;
        }
        for message in messages {
            let body: Value = message
                .get("Body")
                .and_then(Value::as_str)
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            if let Some(event) = shape(body) {
                invoke_async(&function, &event, retry_delay, &dead, &log).await;
            }
            if let Some(handle) = message.get("ReceiptHandle").and_then(Value::as_str) {
                let _ = emulator
                    .json_call(
                        "sqs",
                        "AmazonSQS.DeleteMessage",
                        json!({"QueueUrl": queue_url, "ReceiptHandle": handle}),
                    )
                    .await;
            }
        }
    }
}

/// Shapes moto's GetRecords record as Lambda delivers it.
pub fn lambda_stream_record(mut record: Value, stream_arn: &str) -> Value {
    if let Some(map) = record.as_object_mut() {
        map.insert("eventSourceARN".into(), json!(stream_arn));
        map.insert("eventVersion".into(), json!("1.1"));
        map.insert("awsRegion".into(), json!(REGION));
    }
    if let Some(change) = record.get_mut("dynamodb").and_then(Value::as_object_mut) {
        let created = change
            .get("ApproximateCreationDateTime")
            .and_then(Value::as_f64);
        let seconds = created.map(|s| s.floor()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as f64
        });
        change.insert("ApproximateCreationDateTime".into(), json!(seconds));
    }
    record
}

/// Reads the table's stream and delivers batches as the mapping says.
pub async fn run_stream_delivery(
    emulator: Arc<Emulator>,
    stream_arn: String,
    mapping: StreamMapping,
    function: Arc<Function>,
    dead: DeadLetters,
    log: DeliveryLog,
) {
    let mut iterator = loop {
        match shard_iterator(&emulator, &stream_arn).await {
            Ok(it) => break it,
            Err(err) => {
                warn!(error = %err, "opening the stream failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    loop {
        let page = emulator
            .json_call(
                "dynamodb",
                "DynamoDBStreams_20120810.GetRecords",
                json!({"ShardIterator": iterator, "Limit": mapping.batch_size}),
            )
            .await;
        let page = match page {
            Ok(page) => page,
            Err(err) => {
                warn!(error = %err, "GetRecords failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Some(next) = page.get("NextShardIterator").and_then(Value::as_str) {
            iterator = next.to_owned();
        }
        let records: Vec<Value> = page
            .get("Records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| lambda_stream_record(r, &stream_arn))
            .collect();
        if records.is_empty() {
            tokio::time::sleep(Duration::from_millis(150)).await;
            continue;
        }
        deliver_stream_batch(&function, &mapping, records, &dead, &log).await;
    }
}

async fn shard_iterator(emulator: &Emulator, stream_arn: &str) -> anyhow::Result<String> {
    let stream = emulator
        .json_call(
            "dynamodb",
            "DynamoDBStreams_20120810.DescribeStream",
            json!({"StreamArn": stream_arn}),
        )
        .await?;
    let shard = stream
        .pointer("/StreamDescription/Shards/0/ShardId")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("stream {stream_arn} has no shard"))?;
    let iterator = emulator
        .json_call(
            "dynamodb",
            "DynamoDBStreams_20120810.GetShardIterator",
            json!({"StreamArn": stream_arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await?;
    iterator
        .get("ShardIterator")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no shard iterator for {stream_arn}"))
}

/// Delivers one batch until it succeeds or runs out of retries.
///
/// With ReportBatchItemFailures, Lambda checkpoints before the lowest failed
/// sequence number and retries from there. A function error retries the
/// whole batch, split in halves when BisectBatchOnFunctionError is set.
/// After MaximumRetryAttempts the batch goes to the on-failure destination.
pub fn deliver_stream_batch<'a>(
    function: &'a Function,
    mapping: &'a StreamMapping,
    records: Vec<Value>,
    dead: &'a DeadLetters,
    log: &'a DeliveryLog,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut batch = records;
        let mut retries = 0u32;
        loop {
            let event = json!({"Records": batch});
            log.record(function.name(), &event);
            let outcome = function.invoke(&event).await;
            let failed_from = match &outcome {
                Ok(response) if mapping.report_batch_item_failures => {
                    first_failed(&batch, response)
                }
                Ok(_) => None,
                Err(InvokeError::Function { .. }) if mapping.bisect_on_error && batch.len() > 1 => {
                    let second = batch.split_off(batch.len() / 2);
                    info!(
                        function = function.name(),
                        "function error; bisecting the batch"
                    );
                    deliver_stream_batch(function, mapping, batch, dead, log).await;
                    deliver_stream_batch(function, mapping, second, dead, log).await;
                    return;
                }
                Err(err) => {
                    warn!(function = function.name(), error = %err, "stream batch failed");
                    Some(0)
                }
            };
            let Some(from) = failed_from else { return };
            if retries >= mapping.maximum_retry_attempts {
                warn!(
                    function = function.name(),
                    records = batch.len() - from,
                    "retries exhausted; batch sent to the on-failure destination"
                );
                dead.push(json!({"function": function.name(), "records": batch[from..].to_vec()}));
                return;
            }
            retries += 1;
            batch.drain(..from);
            tokio::time::sleep(Duration::from_millis(200 * u64::from(retries))).await;
        }
    })
}

/// Index of the first record to retry, from a batchItemFailures response.
fn first_failed(batch: &[Value], response: &Value) -> Option<usize> {
    let failures = response
        .get("batchItemFailures")
        .and_then(Value::as_array)?;
    if failures.is_empty() {
        return None;
    }
    let positions: Vec<Option<usize>> = failures
        .iter()
        .map(|f| {
            let id = f.get("itemIdentifier").and_then(Value::as_str)?;
            batch.iter().position(|r| {
                r.pointer("/dynamodb/SequenceNumber")
                    .and_then(Value::as_str)
                    == Some(id)
            })
        })
        .collect();
    // An identifier Lambda cannot match fails the whole batch.
    if positions.iter().any(Option::is_none) {
        return Some(0);
    }
    positions.into_iter().flatten().min()
}
