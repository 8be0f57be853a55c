//! Bounded retries of the Job-side commands' API calls on transient failures.

/// Attempts of one API call before a transient failure is reported.
pub(crate) const ATTEMPTS: u32 = 8;

/// A failure that may pass: a server error (kube-client itself already retries 429, 503 and
/// 504) or a broken connection.
pub(crate) fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `call` until it succeeds, fails for good, or failed transiently `ATTEMPTS` times,
/// pausing 200 ms, 400 ms, … (at most 5 s) between attempts. The Jobs run once
/// (`backoffLimit: 0`): a server error given up on would lose a scheduled backup, or the
/// result of one that ran.
pub(crate) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut pause = std::time::Duration::from_millis(200);
    for _ in 1..ATTEMPTS {
        match call().await {
            Err(e) if transient(&e) => {
                eprintln!("{e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
    call().await
}
