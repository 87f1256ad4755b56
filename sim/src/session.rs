//! A signed-in user: its tokens, and calls that recover from an expired
//! access token by refreshing once, then signing in again.

use crate::api::{Api, ApiError, Tokens};
use crate::stats::{CallKind, Recorder};
use std::time::{Duration, Instant};

/// Attempts at signing in before giving up, when refused for load (429, 5xx, transport).
const LOGIN_ATTEMPTS: u32 = 20;

/// A user's credentials and current tokens.
#[derive(Debug)]
pub struct Session {
    username: String,
    password: String,
    tokens: Tokens,
}

/// Runs `call`, recording its latency under `kind`.
pub async fn timed<T>(
    rec: &Recorder,
    kind: CallKind,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let result = call.await;
    rec.latency(kind, started.elapsed());
    result
}

/// Whether an error is worth retrying the same call for.
fn transient(e: &ApiError) -> bool {
    match e {
        ApiError::Status { status, .. } => *status == 429 || *status >= 500,
        ApiError::Transport(_) => true,
    }
}

impl Session {
    /// Signs in, retrying with back-off while the server sheds load.
    pub async fn login(
        api: &Api,
        rec: &Recorder,
        username: &str,
        password: &str,
    ) -> Result<Self, ApiError> {
        let tokens = login_with_retries(api, rec, username, password).await?;
        Ok(Self {
            username: username.to_owned(),
            password: password.to_owned(),
            tokens,
        })
    }

    /// The user's name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The current access token.
    pub fn access_token(&self) -> &str {
        &self.tokens.access_token
    }

    /// Runs `call` with the access token; on `401` refreshes (or signs in again)
    /// once and repeats it. Latency is recorded under `kind`, failures by code.
    /// (`call` takes the token by value so that the futures stay `Send` for `tokio::spawn`.)
    pub async fn call<T, F, Fut>(
        &mut self,
        api: &Api,
        rec: &Recorder,
        kind: CallKind,
        call: F,
    ) -> Result<T, ApiError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let first = timed(rec, kind, call(self.tokens.access_token.clone())).await;
        let result = match first {
            Err(e) if e.is_unauthorized() => match self.renew(api, rec).await {
                Ok(()) => timed(rec, kind, call(self.tokens.access_token.clone())).await,
                Err(renewal) => Err(renewal),
            },
            other => other,
        };
        if let Err(e) = &result {
            rec.error(format!("{} {}", kind.as_str(), e.key()));
        }
        result
    }

    /// Gets fresh tokens: by the refresh token, else by signing in again.
    async fn renew(&mut self, api: &Api, rec: &Recorder) -> Result<(), ApiError> {
        let refreshed = timed(
            rec,
            CallKind::Refresh,
            api.refresh(&self.tokens.refresh_token),
        )
        .await;
        self.tokens = match refreshed {
            Ok(tokens) => tokens,
            Err(_) => {
                timed(
                    rec,
                    CallKind::Login,
                    api.login(&self.username, &self.password),
                )
                .await?
            }
        };
        Ok(())
    }
}

async fn login_with_retries(
    api: &Api,
    rec: &Recorder,
    username: &str,
    password: &str,
) -> Result<Tokens, ApiError> {
    with_retries(rec, CallKind::Login, "login", || {
        api.login(username, password)
    })
    .await
    .inspect_err(|e| rec.error(format!("login {}", e.key())))
}

/// Runs `call` (timed under `kind`) until it succeeds, fails for good, or has
/// been tried `LOGIN_ATTEMPTS` times, pausing as the server asks (`Retry-After`)
/// while it sheds load (`503 busy` when its password-hashing slots are taken,
/// `429`, a lost connection). Each retried failure is counted as `<name>
/// <code>`; the last one is the caller's to count.
pub async fn with_retries<T, F, Fut>(
    rec: &Recorder,
    kind: CallKind,
    name: &str,
    mut call: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut attempt = 1;
    loop {
        match timed(rec, kind, call()).await {
            Ok(answer) => return Ok(answer),
            Err(e) if transient(&e) && attempt < LOGIN_ATTEMPTS => {
                rec.error(format!("{name} {}", e.key()));
                tokio::time::sleep(e.backoff().max(Duration::from_millis(200))).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
