//! Fence-compatible JWTs: API keys (`pur: api_key`) and access tokens
//! (`pur: access`), RS256-signed with a `kid` that names a key published at
//! `/user/.well-known/jwks`. Signing keys live in the database so every
//! instance verifies every other instance's tokens.

use std::sync::RwLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::{Store, StoreError, UserRow, now_unix};

/// Scopes a user may carry into an API key (fence's USER_ALLOWED_SCOPES).
pub const USER_ALLOWED_SCOPES: [&str; 9] = [
    "fence",
    "openid",
    "user",
    "data",
    "admin",
    "google_credentials",
    "google_service_account",
    "google_link",
    "ga4gh_passport_v1",
];

/// The claims of both token kinds (API.md §1.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub pur: String,
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(default)]
    pub azp: String,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// The API key an access token was minted from: revoking the key ends the token too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_jti: Option<String>,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }
}

/// Why a token was refused; the text follows fence/authutils wording.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("Signature has expired")]
    Expired,
    #[error("Signature verification failed")]
    BadSignature,
    #[error("invalid issuer {0}; expected: ['{1}']")]
    WrongIssuer(String, String),
    #[error("claims have incorrect purpose: expected {expected}, got {got}")]
    WrongPurpose { expected: String, got: String },
    #[error("token is denylisted")]
    Revoked,
    #[error("token is missing required scopes: {{'{0}'}}")]
    MissingScope(String),
    #[error("could not decode token: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
    private_der: Vec<u8>,
}

impl SigningKey {
    fn from_der(kid: &str, der: &[u8]) -> Result<Self, TokenError> {
        let pair = KeyPair::from_pkcs8(der)
            .map_err(|e| TokenError::Malformed(format!("stored signing key {kid}: {e}")))?;
        let public = pair.public_key();
        let modulus = public.modulus().big_endian_without_leading_zero().to_vec();
        let exponent = public.exponent().big_endian_without_leading_zero().to_vec();
        // The signer wants PKCS#1; jsonwebtoken unwraps it from a PKCS#8 PEM.
        let pkcs8_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()));
        let encoding = EncodingKey::from_rsa_pem(pkcs8_pem.as_bytes())
            .map_err(|e| TokenError::Malformed(format!("stored signing key {kid}: {e}")))?;
        Ok(Self {
            kid: kid.to_string(),
            encoding,
            decoding: DecodingKey::from_rsa_raw_components(&modulus, &exponent),
            modulus,
            exponent,
            private_der: der.to_vec(),
        })
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "key_ops": ["verify"],
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.modulus),
            "e": URL_SAFE_NO_PAD.encode(&self.exponent),
        })
    }

    fn public_pem(&self) -> String {
        let pair = KeyPair::from_pkcs8(&self.private_der).expect("checked when loaded");
        let der = pair
            .public_key()
            .as_der()
            .expect("an RSA public key encodes as DER");
        pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()))
    }
}

/// Lifetimes, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub api_key: i64,
    pub access_token: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            api_key: 30 * 24 * 3600,
            access_token: 30 * 60,
        }
    }
}

/// Issues and verifies tokens for one public URL.
pub struct TokenService {
    pub issuer: String,
    pub lifetimes: Lifetimes,
    /// Verification keys, newest last; the newest signs.
    keys: RwLock<Vec<SigningKey>>,
    /// When an unknown key id last made the keys reload.
    last_reload: std::sync::Mutex<Option<std::time::Instant>>,
}

impl TokenService {
    /// Load the signing keys from the database, creating the first one if none exist.
    pub async fn load(
        store: &Store,
        public_url: &str,
        lifetimes: Lifetimes,
    ) -> Result<Self, TokenError> {
        let service = Self {
            issuer: format!("{}/user", public_url.trim_end_matches('/')),
            lifetimes,
            keys: RwLock::new(Vec::new()),
            last_reload: std::sync::Mutex::new(None),
        };
        if store.signing_keys().await?.iter().all(|k| k.retired) {
            rotate(store).await?;
        }
        service.reload(store).await?;
        Ok(service)
    }

    /// Whether an unknown key id may reload the keys now: at most once a
    /// second, so tokens with made-up or retired key ids cannot make every
    /// request read the key table.
    fn may_reload(&self) -> bool {
        let mut last = self.last_reload.lock().expect("reload lock poisoned");
        if last.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1)) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    /// Load the keys in use again: rotated keys join, retired ones go.
    pub async fn reload(&self, store: &Store) -> Result<(), TokenError> {
        let rows = store.signing_keys().await?;
        let keys = rows
            .iter()
            .filter(|r| !r.retired)
            .map(|r| SigningKey::from_der(&r.kid, &r.private_der))
            .collect::<Result<Vec<_>, _>>()?;
        *self.keys.write().expect("key lock poisoned") = keys;
        Ok(())
    }

    fn sign(&self, claims: &Claims) -> String {
        let keys = self.keys.read().expect("key lock poisoned");
        let key = keys.last().expect("at least one signing key is loaded");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("RS256 signing cannot fail")
    }

    /// A new API key for `user`; the caller records its `jti`.
    pub fn issue_api_key(
        &self,
        user: &UserRow,
        scopes: Vec<String>,
        expires_in: Option<i64>,
    ) -> (String, Claims) {
        let now = now_unix();
        let ttl = expires_in
            .filter(|&t| t > 0)
            .map_or(self.lifetimes.api_key, |t| t.min(self.lifetimes.api_key));
        let mut scope: Vec<String> = vec!["fence".into(), "openid".into()];
        for s in scopes {
            if !scope.contains(&s) && s != "credentials" {
                scope.push(s);
            }
        }
        let claims = Claims {
            pur: "api_key".into(),
            iss: self.issuer.clone(),
            sub: user.id.to_string(),
            aud: vec!["gen3".into()],
            iat: now,
            exp: now + ttl,
            jti: uuid::Uuid::new_v4().to_string(),
            azp: String::new(),
            scope,
            context: None,
            api_key_jti: None,
        };
        (self.sign(&claims), claims)
    }

    /// An access token for `user`, carrying `scope`, minted from API key
    /// `api_key_jti` (None: a session token from a login).
    pub fn issue_access_token(
        &self,
        user: &UserRow,
        scope: Vec<String>,
        ttl: i64,
        api_key_jti: Option<&str>,
    ) -> String {
        let now = now_unix();
        let claims = Claims {
            pur: "access".into(),
            iss: self.issuer.clone(),
            sub: user.id.to_string(),
            aud: vec!["gen3".into()],
            iat: now,
            exp: now + ttl,
            jti: uuid::Uuid::new_v4().to_string(),
            azp: String::new(),
            scope,
            context: Some(json!({
                "user": {"name": user.username, "is_admin": user.is_admin,
                          "google": {"proxy_group": null}}
            })),
            api_key_jti: api_key_jti.map(str::to_string),
        };
        self.sign(&claims)
    }

    /// Verify signature, expiry, issuer and purpose of `token`.
    pub async fn verify(
        &self,
        store: &Store,
        token: &str,
        purpose: &str,
    ) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Malformed(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Malformed("token header has no kid".into()))?;
        if !self.has_key(&kid) && self.may_reload() {
            // Another instance may have rotated keys since we loaded ours.
            self.reload(store).await?;
        }
        let claims = {
            let keys = self.keys.read().expect("key lock poisoned");
            let key = keys
                .iter()
                .find(|k| k.kid == kid)
                .ok_or(TokenError::BadSignature)?;
            let mut validation = Validation::new(Algorithm::RS256);
            validation.leeway = 0;
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss"]);
            jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                    _ => TokenError::Malformed(e.to_string()),
                })?
                .claims
        };
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer(claims.iss, self.issuer.clone()));
        }
        if claims.pur != purpose {
            return Err(TokenError::WrongPurpose {
                expected: purpose.into(),
                got: claims.pur,
            });
        }
        Ok(claims)
    }

    fn has_key(&self, kid: &str) -> bool {
        self.keys
            .read()
            .expect("key lock poisoned")
            .iter()
            .any(|k| k.kid == kid)
    }

    /// The JWKS document of every key that still verifies.
    pub fn jwks(&self) -> Value {
        let keys = self.keys.read().expect("key lock poisoned");
        json!({"keys": keys.iter().map(SigningKey::jwk).collect::<Vec<_>>()})
    }

    /// Fence's legacy `/jwt/keys` listing: `[[kid, PEM], ...]`.
    pub fn pem_keys(&self) -> Value {
        let keys = self.keys.read().expect("key lock poisoned");
        json!({"keys": keys.iter().map(|k| json!([k.kid, k.public_pem()])).collect::<Vec<_>>()})
    }
}

/// Lifetime of a session token from a login (fence's session lifetime);
/// logout ends it earlier.
pub const SESSION_TTL: i64 = 8 * 60 * 60;

/// Scopes of a session token: everything a user may hold, plus `credentials`,
/// which lets the session manage the user's API keys.
pub fn session_scopes() -> Vec<String> {
    USER_ALLOWED_SCOPES
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once("credentials".to_string()))
        .collect()
}

/// Generate a new signing key; it signs from now on, older keys keep verifying.
pub async fn rotate(store: &Store) -> Result<String, TokenError> {
    let pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|e| TokenError::Malformed(format!("cannot generate an RSA key: {e}")))?;
    let der = pair
        .as_der()
        .map_err(|e| TokenError::Malformed(format!("cannot encode the RSA key: {e}")))?;
    let kid = format!("key-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%f"));
    store.insert_signing_key(&kid, der.as_ref()).await?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token of `header` and `claims` (as JSON), signed by `service`'s key.
    fn forged(service: &TokenService, header: Value, claims: Value) -> String {
        let keys = service.keys.read().unwrap();
        let key = keys.last().unwrap();
        let mut header = header;
        header["kid"] = json!(key.kid);
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding, Algorithm::RS256).unwrap();
        format!("{input}.{signature}")
    }

    #[tokio::test]
    async fn unknown_critical_headers_and_mistyped_claims_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::default_url(dir.path())).await.unwrap();
        let service = TokenService::load(&store, "http://commons.test", Lifetimes::default())
            .await
            .unwrap();
        let now = now_unix();
        let claims = json!({
            "pur": "access", "iss": "http://commons.test/user", "sub": "1", "aud": ["gen3"],
            "iat": now, "exp": now + 600, "jti": "j", "azp": "", "scope": ["openid"],
        });
        let good = forged(
            &service,
            json!({"alg": "RS256", "typ": "JWT"}),
            claims.clone(),
        );
        assert!(service.verify(&store, &good, "access").await.is_ok());

        let critical = forged(
            &service,
            json!({"alg": "RS256", "typ": "JWT", "crit": ["exp2"], "exp2": 1}),
            claims.clone(),
        );
        assert!(service.verify(&store, &critical, "access").await.is_err());

        for (name, wrong) in [
            ("iss", json!(["http://commons.test/user"])),
            ("sub", json!(1)),
            ("exp", json!((now + 600).to_string())),
        ] {
            let mut mistyped = claims.clone();
            mistyped[name] = wrong;
            let token = forged(&service, json!({"alg": "RS256", "typ": "JWT"}), mistyped);
            assert!(
                service.verify(&store, &token, "access").await.is_err(),
                "{name} of the wrong type was accepted"
            );
        }
    }
}
