//! [`Budget`]: a timeout for each call to one backend on the request path, and a
//! [`Breaker`] shared by those calls.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::Breaker;

/// The timeout of a call to a backend on the request path, unless configured: a hung
/// store or Redis costs a request at most this.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// How the calls to one backend spend a request's time: each has
/// [`timeout`](Self::timeout) to answer, and after a few failures or timeouts in a row
/// the breaker opens and calls fail at once, without being sent, until a probe gets an
/// answer (see [`Breaker`]). Clones share the breaker.
///
/// Only reads belong in a budget. A call cut short by the timeout is dropped: a read
/// dropped loses nothing, but a write dropped may or may not have happened.
///
/// ```
/// use std::time::Duration;
///
/// use keygate_core::backend::{Budget, Unanswered};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let budget = Budget::new(Duration::from_millis(20));
/// let hung = std::future::pending::<Result<u64, std::io::Error>>();
/// let answer = budget.call(hung, |_| true).await;
/// assert!(matches!(answer, Err(Unanswered::Late(_))));
///
/// let quick = async { Ok::<u64, std::io::Error>(7) };
/// assert_eq!(budget.call(quick, |_| true).await.unwrap(), 7);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Budget {
    timeout: Duration,
    breaker: Arc<Breaker>,
}

impl Default for Budget {
    /// [`DEFAULT_TIMEOUT`], and a breaker of its own.
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT)
    }
}

/// Why a call within a [`Budget`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered<E> {
    /// Not sent: the breaker is open.
    #[error("unavailable (circuit breaker open)")]
    Open,
    /// No answer within the timeout; the call was dropped.
    #[error("no answer within {} ms", .0.as_millis())]
    Late(Duration),
    /// The backend answered with an error.
    #[error(transparent)]
    Failed(E),
}

impl Budget {
    /// A budget of `timeout` per call, with a breaker of its own.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            breaker: Arc::default(),
        }
    }

    /// How long a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The breaker shared by this budget's calls.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs `call` within the budget. An error for which `outage` is true (the backend
    /// is down or failing, as opposed to refusing this one request) counts against the
    /// breaker like a timeout; any answer else closes it.
    pub async fn call<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        outage: impl FnOnce(&E) -> bool,
    ) -> Result<T, Unanswered<E>> {
        if !self.breaker.allow() {
            return Err(Unanswered::Open);
        }
        let answered = match timer(self.timeout) {
            Some(timer) => {
                let (mut call, mut timer) = (pin!(call), pin!(timer));
                poll_fn(|cx| match call.as_mut().poll(cx) {
                    Poll::Ready(answer) => Poll::Ready(Ok(answer)),
                    Poll::Pending => timer.as_mut().poll(cx).map(Err),
                })
                .await
            }
            None => Ok(call.await),
        };
        match answered {
            Ok(Ok(answer)) => {
                self.breaker.success();
                Ok(answer)
            }
            Ok(Err(error)) => {
                if outage(&error) {
                    self.breaker.failure();
                } else {
                    self.breaker.success();
                }
                Err(Unanswered::Failed(error))
            }
            Err(_) => {
                self.breaker.failure();
                Err(Unanswered::Late(self.timeout))
            }
        }
    }
}

/// A sleep of `timeout` on Tokio's timer; `None` on a runtime built without it (no
/// `enable_time`/`enable_all`), where creating one panics. That is said once, in the log,
/// and calls then go without a timeout rather than fail: a runtime's settings must not
/// turn every cold request into a 503. `#[tokio::main]`, `#[tokio::test]` and actix-web's
/// runtime all have the timer.
fn timer(timeout: Duration) -> Option<tokio::time::Sleep> {
    static NO_TIMER: AtomicBool = AtomicBool::new(false);
    if NO_TIMER.load(Ordering::Relaxed) {
        return None;
    }
    match std::panic::catch_unwind(|| tokio::time::sleep(timeout)) {
        Ok(sleep) => Some(sleep),
        Err(_) => {
            if !NO_TIMER.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    "the Tokio runtime has no timer (build it with enable_all): backend calls \
                     go without their time budget"
                );
            }
            None
        }
    }
}
