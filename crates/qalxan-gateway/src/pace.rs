//! A request body that must keep arriving: the defence against slow POSTs.
//!
//! A client that declares a large body and then sends a byte now and then holds a connection,
//! a request slot and an upstream connection for as long as it likes. Like Apache's
//! mod_reqtimeout (`body=30,MinRate=500`), a body gets a starting allowance that grows by one
//! second for every `min_rate` bytes received; like nginx's `client_body_timeout`, it also
//! may not go silent for longer than the allowance's start. Past either, the body ends in
//! [`BodyTooSlow`], which the proxy answers with 408 and a closed connection.
//!
//! The check runs in `poll_frame` with a timer of its own, so a client that sends nothing
//! at all is cut off too: nothing else would wake the body up.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// A request body came more slowly than the gateway's minimum data rate.
#[derive(Debug, thiserror::Error)]
#[error("the request body came too slowly")]
pub(crate) struct BodyTooSlow;

/// How fast a body must come.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// The starting allowance, and the longest silence allowed.
    pub timeout: Duration,
    /// Bytes per second that extend the allowance by a second; 0: the allowance never grows
    /// and the whole body must come within `timeout`.
    pub min_rate: u64,
}

pub(crate) struct Paced<B> {
    inner: B,
    pace: Pace,
    started: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
}

impl<B> Paced<B> {
    pub fn new(inner: B, pace: Pace) -> Paced<B> {
        let started = Instant::now();
        Paced {
            inner,
            pace,
            started,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(started + pace.timeout)),
        }
    }

    /// When the body must have sent its next byte: the earlier of the end of the allowance
    /// earned so far and the end of the longest silence from now.
    fn deadline(&self, now: Instant) -> Instant {
        let earned = if self.pace.min_rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(self.received as f64 / self.pace.min_rate as f64)
        };
        (self.started + self.pace.timeout + earned).min(now + self.pace.timeout)
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let now = Instant::now();
                    let deadline = this.deadline(now);
                    if deadline <= now {
                        return Poll::Ready(Some(Err(BodyTooSlow.into())));
                    }
                    this.timer.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTooSlow.into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;

    /// A body that sends, for each step, `bytes` after `wait`.
    struct Script {
        steps: std::collections::VecDeque<(Duration, usize)>,
        timer: Option<Pin<Box<Sleep>>>,
    }

    fn script(steps: impl IntoIterator<Item = (Duration, usize)>) -> Script {
        Script {
            steps: steps.into_iter().collect(),
            timer: None,
        }
    }

    /// `count` chunks of `bytes`, one every `every`.
    fn trickle(bytes: usize, every: Duration, count: usize) -> Script {
        script(std::iter::repeat_n((every, bytes), count))
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let this = self.get_mut();
            let Some(&(wait, bytes)) = this.steps.front() else {
                return Poll::Ready(None);
            };
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
            match timer.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    this.timer = None;
                    this.steps.pop_front();
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'a'; bytes])))))
                }
            }
        }
    }

    async fn outcome(body: Script, pace: Pace) -> Result<u64, String> {
        let mut paced = Paced::new(body, pace);
        let mut total = 0;
        while let Some(frame) = paced.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            total += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        Ok(total)
    }

    const PACE: Pace = Pace {
        timeout: Duration::from_secs(10),
        min_rate: 500,
    };

    const TOO_SLOW: &str = "the request body came too slowly";

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_passes_one_below_it_is_cut_off() {
        // 1,000 bytes a second for a minute: well above 500 bytes a second.
        let fast = trickle(1000, Duration::from_secs(1), 60);
        assert_eq!(outcome(fast, PACE).await, Ok(60_000));
        // 100 bytes a second: the allowance (10 s + 1 s per 500 bytes) runs out at 12.5 s.
        let slow = trickle(100, Duration::from_secs(1), 60);
        let started = Instant::now();
        assert_eq!(outcome(slow, PACE).await, Err(TOO_SLOW.into()));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(12) && took <= Duration::from_secs(13),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_longer_than_the_timeout_is_cut_off_whatever_came_before() {
        // A fast start earns a long allowance, but 11 s of silence ends the body anyway.
        let body = script([
            (Duration::from_millis(10), 100_000),
            (Duration::from_secs(11), 1),
        ]);
        let started = Instant::now();
        assert_eq!(outcome(body, PACE).await, Err(TOO_SLOW.into()));
        assert!(started.elapsed() < Duration::from_secs(11));
        // The same pause one second shorter is fine.
        let body = script([
            (Duration::from_millis(10), 100_000),
            (Duration::from_secs(9), 1),
        ]);
        assert_eq!(outcome(body, PACE).await, Ok(100_001));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_the_whole_body_has_the_timeout() {
        let pace = Pace {
            timeout: Duration::from_secs(10),
            min_rate: 0,
        };
        let steady = trickle(10_000, Duration::from_secs(1), 9);
        assert_eq!(outcome(steady, pace).await, Ok(90_000));
        let long = trickle(10_000, Duration::from_secs(1), 11);
        assert_eq!(outcome(long, pace).await, Err(TOO_SLOW.into()));
    }
}
