//! Client-side rate limit for our API writes and reads (not the long-running watches):
//! a token bucket with upstream kube-scheduler's defaults (QPS 50, burst 100), so a
//! burst of bindings or reports cannot flood the API server.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    /// The `client` label of the wait metric.
    client: &'static str,
    qps: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// `qps <= 0` disables the limit.
    pub fn new(qps: f64, burst: u32) -> RateLimiter {
        Self::for_client("main", qps, burst)
    }

    /// As [`new`](Self::new); waits are recorded with label `client`.
    pub fn for_client(client: &'static str, qps: f64, burst: u32) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            client,
            qps,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
            }),
        }
    }

    /// Waits for one token. Callers queue on the mutex, so tokens go out in order.
    pub async fn acquire(&self) {
        if self.qps <= 0.0 || !self.qps.is_finite() {
            return;
        }
        let asked = Instant::now();
        let mut b = self.bucket.lock().await;
        let now = Instant::now();
        b.tokens =
            (b.tokens + now.duration_since(b.refilled).as_secs_f64() * self.qps).min(self.burst);
        b.refilled = now;
        if b.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - b.tokens) / self.qps);
            tokio::time::sleep(wait).await;
            b.tokens = 1.0;
            b.refilled = Instant::now();
        }
        b.tokens -= 1.0;
        ::metrics::histogram!(super::metrics::RATE_LIMITER_WAIT, "client" => self.client)
            .record(asked.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_is_free_then_qps_paces() {
        let rl = RateLimiter::new(100.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            rl.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(5),
            "burst tokens need no wait"
        );
        for _ in 0..10 {
            rl.acquire().await;
        }
        let waited = start.elapsed().as_secs_f64();
        assert!(
            (0.095..0.5).contains(&waited),
            "10 more at 100/s take 0.1 s, took {waited}"
        );
    }

    #[tokio::test]
    async fn zero_qps_is_unlimited() {
        let rl = RateLimiter::new(0.0, 1);
        let start = Instant::now();
        for _ in 0..1000 {
            rl.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
