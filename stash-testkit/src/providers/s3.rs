//! An S3-compatible server embedded in the process (s3s over a directory), on a free port.
//!
//! Buckets are directories under a temporary root. Requests must be signed with the server's
//! access key and secret key, so clients exercise their credential handling. Path-style
//! addressing only: `http://127.0.0.1:PORT/bucket/key`, which is what restic uses for an
//! endpoint given as an IP address.

use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Response, S3Result, S3};

/// Errors from starting an [`S3Server`].
#[derive(Debug, thiserror::Error)]
pub enum S3ServerError {
    /// Binding the port, creating the runtime or the directories failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The S3 file system rejected its root directory.
    #[error("s3s-fs: {0}")]
    Backend(String),
    /// A bucket name that is not a single path segment.
    #[error("invalid bucket name {0:?}")]
    InvalidBucket(String),
}

/// A running in-process S3 server, stopped and deleted on drop.
pub struct S3Server {
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
    service: S3Service,
    runtime: Option<tokio::runtime::Runtime>,
    root: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("addr", &self.addr)
            .field("running", &self.runtime.is_some())
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts a server on 127.0.0.1 with random credentials and one empty bucket, `stash`.
    pub fn start() -> Result<Self, S3ServerError> {
        let root = tempfile::Builder::new().prefix("stash-s3-").tempdir()?;
        let access_key = super::random_hex(10)?;
        let secret_key = super::random_hex(20)?;
        let fs = s3s_fs::FileSystem::new(root.path())
            .map_err(|err| S3ServerError::Backend(format!("{err:?}")))?;
        let service = {
            let mut builder = S3ServiceBuilder::new(RecursiveListing(fs));
            builder.set_auth(SimpleAuth::from_single(
                access_key.clone(),
                secret_key.clone(),
            ));
            builder.build()
        };
        // Bound here, before the runtime starts, so the port is ours with no race.
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let runtime = serve(listener, service.clone())?;
        let server = S3Server {
            addr,
            access_key,
            secret_key,
            service,
            runtime: Some(runtime),
            root,
        };
        server.create_bucket("stash")?;
        Ok(server)
    }

    /// Stops serving, as a crashed or unreachable server: the port is closed and open
    /// connections are dropped. The stored objects stay; [`S3Server::resume`] serves them again.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Serves again on the same port after [`S3Server::stop`].
    pub fn resume(&mut self) -> Result<(), S3ServerError> {
        if self.runtime.is_none() {
            let listener = std::net::TcpListener::bind(self.addr)?;
            self.runtime = Some(serve(listener, self.service.clone())?);
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Access key to sign requests with (`AWS_ACCESS_KEY_ID`).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Secret key to sign requests with (`AWS_SECRET_ACCESS_KEY`).
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The directory that holds the buckets (one subdirectory each).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Creates an empty bucket (no error if it exists).
    pub fn create_bucket(&self, name: &str) -> Result<(), S3ServerError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(S3ServerError::InvalidBucket(name.to_owned()));
        }
        std::fs::create_dir_all(self.root.path().join(name))?;
        Ok(())
    }

    /// restic's repository string for `bucket/prefix` on this server.
    pub fn restic_repository(&self, bucket: &str, prefix: &str) -> String {
        let path = if prefix.is_empty() {
            bucket.to_owned()
        } else {
            format!("{bucket}/{}", prefix.trim_start_matches('/'))
        };
        format!("s3:{}/{path}", self.endpoint())
    }
}

/// Serves `service` on `listener` from a runtime of its own; dropping the runtime closes the
/// port and every connection.
fn serve(
    listener: std::net::TcpListener,
    service: S3Service,
) -> Result<tokio::runtime::Runtime, S3ServerError> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("s3-server")
        .enable_io()
        .enable_time()
        .build()?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    runtime.spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    Ok(runtime)
}

/// s3s-fs with one fix: an empty `delimiter=` (which minio-go, and so restic, sends for a
/// recursive listing) means no delimiter, as on AWS; s3s-fs would otherwise list nothing.
struct RecursiveListing(s3s_fs::FileSystem);

#[async_trait::async_trait]
impl S3 for RecursiveListing {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.0.create_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.0.delete_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.0.head_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.0.get_bucket_location(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.0.list_buckets(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.0.put_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.0.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.0.head_object(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.0.copy_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.0.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.0.delete_objects(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.0.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.0.upload_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.0.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.0.abort_multipart_upload(req).await
    }

    async fn list_objects(
        &self,
        mut req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        if req.input.delimiter.as_deref() == Some("") {
            req.input.delimiter = None;
        }
        self.0.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        mut req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        if req.input.delimiter.as_deref() == Some("") {
            req.input.delimiter = None;
        }
        self.0.list_objects_v2(req).await
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Entry point for `stash-testkit s3`: starts a server, prints its endpoint and credentials as
/// one JSON line on `out`, and keeps it running until `input` reaches end of file or a line
/// `quit`; then stops it and removes its files.
pub fn run_cli(input: impl BufRead, mut out: impl Write) -> Result<(), S3ServerError> {
    let server = S3Server::start()?;
    let params = serde_json::json!({
        "endpoint": server.endpoint(),
        "accessKey": server.access_key(),
        "secretKey": server.secret_key(),
        "bucket": "stash",
        "root": server.root(),
    });
    writeln!(out, "{params}")?;
    out.flush()?;
    for line in input.lines() {
        if line?.trim() == "quit" {
            break;
        }
    }
    drop(server);
    Ok(())
}
