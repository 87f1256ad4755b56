//! Signing up the simulated volunteers: create each account through the staff
//! API (or find it already there) and sign it in.

use crate::api::{Api, ApiError};
use crate::session::{Session, with_retries};
use crate::stats::{CallKind, Recorder};
use anyhow::Context;
use futures::{StreamExt, TryStreamExt};

/// Accounts created and signed in at once; the server hashes passwords with Argon2, so not too many.
const CONCURRENCY: usize = 8;

/// Who the simulated volunteers are.
#[derive(Debug, Clone)]
pub struct Roster {
    /// Usernames are this prefix and a five-digit index, e.g. `vol00007`.
    pub prefix: String,
    /// The password every simulated volunteer uses.
    pub password: String,
    /// How many volunteers.
    pub count: usize,
}

impl Roster {
    /// The username of volunteer `index`.
    pub fn username(&self, index: usize) -> String {
        format!("{}{index:05}", self.prefix)
    }

    /// Creates (unless they exist) and signs in every volunteer, in index order.
    pub async fn enlist(
        &self,
        api: &Api,
        rec: &Recorder,
        admin: &Session,
    ) -> anyhow::Result<Vec<Session>> {
        let admin_token = admin.access_token().to_owned();
        futures::stream::iter(0..self.count)
            .map(|index| {
                let admin_token = admin_token.as_str();
                async move {
                    let username = self.username(index);
                    self.create(api, rec, admin_token, &username).await?;
                    Session::login(api, rec, &username, &self.password)
                        .await
                        .with_context(|| format!("signing in volunteer {username}"))
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }

    async fn create(
        &self,
        api: &Api,
        rec: &Recorder,
        admin_token: &str,
        username: &str,
    ) -> anyhow::Result<()> {
        let created = with_retries(rec, CallKind::CreateUser, "create_user", || {
            api.create_user(admin_token, username, &self.password, "volunteer")
        })
        .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.is(409, "username_taken") => Ok(()),
            Err(e) => {
                rec.error(format!("create_user {}", e.key()));
                Err(anyhow::Error::new::<ApiError>(e))
                    .with_context(|| format!("creating volunteer {username}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_the_prefix_and_a_padded_index() {
        let roster = Roster {
            prefix: "vol".into(),
            password: "x".into(),
            count: 3,
        };
        assert_eq!(roster.username(7), "vol00007");
    }
}
