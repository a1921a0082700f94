//! An S3-compatible server for benchmarks that is neither CPU-bound nor
//! instant: `s3s-fs` (crates.io; `make bench` installs it under `.tools/`)
//! behind a proxy that holds every byte sent to it for a fixed latency.
//!
//! moto answers one request at a time, in Python, in under a millisecond of
//! wire time; S3 answers thousands at once, each after tens of
//! milliseconds. Against moto the client with more requests in flight gains
//! nothing; against this server, as against S3, it does.
//!
//! The latency is one-way, client to server: each chunk of a request
//! reaches s3s-fs `latency` after it was sent, whatever else is in flight
//! (a delay line, not a throttle), so every request costs at least
//! `latency` and bandwidth is not limited. Responses pass straight through.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::account::REGION;
use crate::emulator::free_port;
use crate::lambda_api::AbortOnDrop;

const ACCESS_KEY: &str = "bench";
const SECRET_KEY: &str = "bench-secret-key";

/// `s3s-fs` on loopback behind a latency proxy; stopped when dropped.
pub struct SlowS3 {
    /// The proxy: where clients connect.
    pub endpoint: String,
    pub latency: Duration,
    server: Child,
    data: PathBuf,
    _proxy: AbortOnDrop,
}

impl SlowS3 {
    /// Starts `binary` (s3s-fs) on a fresh data directory under `scratch`,
    /// checking SigV4 with the bench's own keys, and the proxy in front.
    pub async fn start(binary: &Path, scratch: &Path, latency: Duration) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "{} not found: `make bench` installs s3s-fs there",
                binary.display()
            );
        }
        let data = scratch.join("s3s-data");
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let port = free_port()?;
        let server = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&data)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let upstream = format!("127.0.0.1:{port}");
        crate::emulator::wait_until("s3s-fs to listen", Duration::from_secs(10), || {
            let upstream = upstream.clone();
            async move { Ok(TcpStream::connect(&upstream).await.ok().map(|_| ())) }
        })
        .await?;

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let proxy = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        relay(client, server, latency).await;
                    }
                });
            }
        });
        Ok(Self {
            endpoint,
            latency,
            server,
            data,
            _proxy: AbortOnDrop(vec![proxy]),
        })
    }

    /// The server's process id, for CPU accounting.
    pub fn pid(&self) -> Option<u32> {
        self.server.id()
    }

    /// Where s3s-fs keeps objects (one file each).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// SDK configuration signing with the server's keys, through the proxy.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "slow-s3",
            ))
            .load()
            .await
    }

    /// Environment for a process (the aws CLI) talking to it.
    pub fn client_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// Client to server through the delay line; server to client directly.
async fn relay(client: TcpStream, server: TcpStream, latency: Duration) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender
                        .send((Instant::now() + latency, buffer[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    // Chunks arrive in order, each due `latency` after it was read.
    let delivering = async move {
        while let Some((due, bytes)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if server_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let answering = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(reading, delivering, answering);
}
