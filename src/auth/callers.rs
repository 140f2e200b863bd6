//! Callers already verified. Checking a token costs several database reads
//! (the key or session not revoked, the user active, the user's grants);
//! a server keeps each verified caller instead, for as long as nothing it
//! was built from can have changed, so a request pays for none of them.
//!
//! Why a kept caller is never stale (SECURITY.md):
//! - each is tagged with the store's identity generation when its reads
//!   began, and trusted only while the generation is the same: this
//!   process's own writes to users, keys, sessions and grants change it at
//!   once;
//! - other processes' writes raise the database's identity epoch (triggers,
//!   in the writing transaction); [`VerifiedCallers::watch`] reads it every
//!   [`IDENTITY_POLL`], and kept callers are trusted only while the last
//!   completed read began less than [`IDENTITY_SETTLE`] ago;
//! - whatever takes access away answers only after [`IDENTITY_SETTLE`]
//!   (`store::restrictions_settled`), so by then every server has seen it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{Principal, TokenService};
use crate::store::{IDENTITY_POLL, IDENTITY_SETTLE, Store};

/// How many verified callers a server keeps (the least used go first).
const CAPACITY: usize = 10_000;

pub struct VerifiedCallers {
    /// By the SHA-256 of the token: the identity generation the caller was
    /// read at, and the caller.
    principals: quick_cache::sync::Cache<[u8; 32], (u64, Principal)>,
    /// When the latest completed read of the identity epoch began.
    epoch_read_at: Mutex<Option<Instant>>,
}

impl Default for VerifiedCallers {
    fn default() -> Self {
        Self {
            principals: quick_cache::sync::Cache::new(CAPACITY),
            epoch_read_at: Mutex::new(None),
        }
    }
}

impl VerifiedCallers {
    /// The caller `token` was verified as, if that still holds at
    /// `generation` and the token has not expired since.
    pub fn get(&self, token: &str, generation: u64) -> Option<Principal> {
        if !self.current() {
            return None;
        }
        let (read_at, principal) = self.principals.get(&key(token))?;
        (read_at == generation && principal.claims.exp >= crate::store::now_unix())
            .then_some(principal)
    }

    /// Keep a caller verified from reads that began at `generation`.
    pub fn insert(&self, token: &str, generation: u64, principal: Principal) {
        self.principals.insert(key(token), (generation, principal));
    }

    /// Whether other processes' changes are known up to IDENTITY_SETTLE ago.
    fn current(&self) -> bool {
        self.epoch_read_at
            .lock()
            .expect("epoch lock poisoned")
            .is_some_and(|at| at.elapsed() < IDENTITY_SETTLE)
    }

    /// Follow the database's identity epoch while `callers` is in use: when
    /// it moves, the kept callers are verified again and the signing keys in
    /// use are reloaded (another instance may have rotated or retired one).
    pub fn watch(
        callers: &Arc<Self>,
        store: Arc<Store>,
        tokens: Arc<TokenService>,
    ) -> tokio::task::JoinHandle<()> {
        let callers = Arc::downgrade(callers);
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                tokio::time::sleep(IDENTITY_POLL).await;
                let Some(callers) = callers.upgrade() else {
                    return;
                };
                let began = Instant::now();
                match store.identity_epoch().await {
                    Ok(epoch) => {
                        if seen != Some(epoch) {
                            // Keys first: a caller verified after the change
                            // below is verified with the keys now in use.
                            if let Err(e) = tokens.reload(&store).await {
                                tracing::warn!(error = %e, "could not reload the signing keys");
                                continue;
                            }
                            store.identity_changed_elsewhere();
                            seen = Some(epoch);
                        }
                        *callers.epoch_read_at.lock().expect("epoch lock poisoned") = Some(began);
                    }
                    Err(e) => tracing::debug!(error = %e, "could not read the identity epoch"),
                }
            }
        })
    }
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Claims, Permissions};
    use crate::store::UserRow;

    fn principal(exp: i64) -> Principal {
        Principal {
            user: UserRow {
                id: 7,
                username: "eve".into(),
                password_hash: None,
                is_admin: false,
                active: true,
                sessions_after: 0,
            },
            claims: Claims {
                pur: "access".into(),
                iss: "https://commons.example/user".into(),
                sub: "7".into(),
                aud: Vec::new(),
                iat: 0,
                exp,
                jti: "j".into(),
                azp: String::new(),
                scope: Vec::new(),
                context: None,
                api_key_jti: None,
            },
            permissions: Permissions::default(),
        }
    }

    #[test]
    fn a_kept_caller_is_trusted_only_while_nothing_can_have_changed() {
        let callers = VerifiedCallers::default();
        let later = crate::store::now_unix() + 600;
        callers.insert("token", 3, principal(later));
        assert!(
            callers.get("token", 3).is_none(),
            "untrusted before the identity epoch was ever read"
        );
        *callers.epoch_read_at.lock().unwrap() = Some(Instant::now());
        assert_eq!(callers.get("token", 3).unwrap().user.username, "eve");
        assert!(callers.get("other token", 3).is_none());
        assert!(
            callers.get("token", 4).is_none(),
            "an identity write since it was read"
        );
        *callers.epoch_read_at.lock().unwrap() = Some(Instant::now() - IDENTITY_SETTLE);
        assert!(
            callers.get("token", 3).is_none(),
            "the identity epoch was last read too long ago"
        );
        *callers.epoch_read_at.lock().unwrap() = Some(Instant::now());
        callers.insert("expired", 3, principal(crate::store::now_unix() - 1));
        assert!(
            callers.get("expired", 3).is_none(),
            "the token expired since"
        );
    }
}
