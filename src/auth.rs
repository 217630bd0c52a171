//! API authentication: JWT verification into a `Principal`, and minting tokens for
//! development (`curbpay token`) and tests. The algorithm is pinned by configuration,
//! never taken from the token's header.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{JwtConfig, JwtKey};
use crate::error::ApiError;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The longest token accepted (an `Authorization` header is capped at the same size).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Operates curbpay: sees and does everything.
    Admin,
    /// A parking app, by its id.
    App(Uuid),
    /// A parking operator, by its id.
    Operator(Uuid),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's `sub` claim (`Viewer.subject`; admins are rate-limited by it).
    pub subject: String,
    /// The role, and the party it acts as.
    pub role: Role,
    /// When the token stops being valid (long-lived subscriptions end then).
    pub expires_at: DateTime<Utc>,
    /// What the token may do within its role.
    pub scopes: Scopes,
}

/// What a token may do within its role (the `scope` claim, OAuth style: a
/// space-separated list). `read` allows queries and subscriptions; `write` allows
/// everything the role allows. A token without a `scope` claim has both, as tokens
/// minted before scopes existed did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    /// Whether mutations are allowed (every token may read).
    pub write: bool,
}

impl Scopes {
    /// Everything the role allows.
    pub const FULL: Scopes = Scopes { write: true };
    /// Queries and subscriptions only.
    pub const READ_ONLY: Scopes = Scopes { write: false };

    /// Reads a `scope` claim. Unknown values are refused, so a typo never widens
    /// access; an empty claim grants nothing and is refused too.
    pub fn parse(claim: Option<&str>) -> Result<Scopes, String> {
        let Some(claim) = claim else {
            return Ok(Scopes::FULL);
        };
        let mut scopes = Scopes { write: false };
        let mut any = false;
        for value in claim.split_whitespace() {
            match value {
                "read" => {}
                "write" => scopes.write = true,
                other => {
                    let shown: String = other.chars().take(32).collect();
                    return Err(format!("unknown scope {shown:?} (known: read, write)"));
                }
            }
            any = true;
        }
        if !any {
            return Err("the scope claim is empty (use read, write or both)".to_owned());
        }
        Ok(scopes)
    }

    /// The scopes as listed in `viewer { scopes }`: `write` implies `read`.
    pub fn names(self) -> Vec<&'static str> {
        if self.write { vec!["read", "write"] } else { vec!["read"] }
    }
}

impl Principal {
    /// Whether the token has expired (past the leeway). A WebSocket authenticates once,
    /// at `connection_init`, so every operation on it checks this again.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now > self.expires_at + chrono::Duration::seconds(LEEWAY_SECS as i64)
    }

    /// The app the caller acts as (role app).
    pub fn app_id(&self) -> Option<Uuid> {
        match self.role {
            Role::App(id) => Some(id),
            _ => None,
        }
    }
    /// The operator the caller acts as (role operator).
    pub fn operator_id(&self) -> Option<Uuid> {
        match self.role {
            Role::Operator(id) => Some(id),
            _ => None,
        }
    }
}

/// The apps and operators tokens have been seen to name and that exist. Parties are
/// never deleted, so a party once found stays valid and later requests need no
/// database round trip; the set is bounded by the number of parties (and cleared,
/// never grown, past `MAX_KNOWN_PARTIES`).
#[derive(Default)]
pub struct KnownParties(std::sync::RwLock<std::collections::HashSet<Role>>);

const MAX_KNOWN_PARTIES: usize = 100_000;

impl KnownParties {
    /// Whether the party is known to exist (admins always are).
    pub fn contains(&self, role: Role) -> bool {
        role == Role::Admin || self.0.read().unwrap_or_else(|e| e.into_inner()).contains(&role)
    }

    /// Remembers that the party exists.
    pub fn insert(&self, role: Role) {
        let mut set = self.0.write().unwrap_or_else(|e| e.into_inner());
        if set.len() >= MAX_KNOWN_PARTIES {
            set.clear();
        }
        set.insert(role);
    }
}

/// The claims curbpay reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: who the token was minted for.
    pub sub: String,
    /// `admin`, `app` or `operator`.
    pub role: String,
    /// The app (role `app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<Uuid>,
    /// The operator (role `operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<Uuid>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: i64,
    /// Space-separated scopes (`read`, `write`); absent means everything the role allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Not valid before this time (checked with the same leeway as `exp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issuer; required when `CURBPAY_JWT_ISSUER` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience; required when `CURBPAY_JWT_AUDIENCE` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// Claims for a role, valid for `ttl`.
    pub fn new(role: Role, subject: Option<String>, ttl: std::time::Duration) -> Claims {
        let (role_name, app_id, operator_id) = match role {
            Role::Admin => ("admin", None, None),
            Role::App(id) => ("app", Some(id), None),
            Role::Operator(id) => ("operator", None, Some(id)),
        };
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
        Claims {
            sub: subject.unwrap_or_else(|| format!("dev-{role_name}")),
            role: role_name.to_owned(),
            app_id,
            operator_id,
            exp: (Utc::now() + ttl).timestamp(),
            scope: None,
            nbf: None,
            iss: None,
            aud: None,
        }
    }
}

/// Verifies API tokens.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    /// `secret` is used when the configuration asks for a generated key.
    pub fn new(config: &JwtConfig, generated_secret: Option<&[u8]>) -> anyhow::Result<JwtVerifier> {
        let (key, algorithm) = match &config.key {
            JwtKey::Secret(secret) => (DecodingKey::from_secret(secret.expose_secret().as_bytes()), Algorithm::HS256),
            JwtKey::Generate => {
                let secret = generated_secret.ok_or_else(|| anyhow::anyhow!("no JWT key configured"))?;
                (DecodingKey::from_secret(secret), Algorithm::HS256)
            }
            JwtKey::PublicKeyPem { pem, path } => public_key(pem).ok_or_else(|| {
                anyhow::anyhow!("{}: not an RSA, EC (P-256) or Ed25519 public key in PEM", path.display())
            })?,
        };
        let mut validation = Validation::new(algorithm);
        // A configured `iss`/`aud` must be present, not just match when present.
        let mut required = vec!["exp", "sub"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        match &config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(JwtVerifier { key, validation })
    }

    /// Verifies a bearer token. The error never contains the token.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::Unauthenticated(format!(
                "invalid token: longer than {} KiB",
                MAX_TOKEN_BYTES / 1024
            )));
        }
        check_critical_header(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match err.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                ErrorKind::InvalidAudience => "the token's audience is not accepted",
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => "the token's signature is not valid",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token is malformed",
            };
            ApiError::Unauthenticated(format!("invalid token: {why}"))
        })?;
        principal(data.claims)
    }
}

/// RFC 7515 §4.1.11: a `crit` header lists extensions the recipient must understand
/// or refuse the token. curbpay understands none, so any `crit` is refused (the JWT
/// library ignores header fields it does not know).
fn check_critical_header(token: &str) -> Result<(), ApiError> {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap_or_default();
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        // Malformed: the library says so with its own message.
        return Ok(());
    };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes) {
        Ok(fields) if fields.contains_key("crit") => Err(ApiError::Unauthenticated(
            "invalid token: it names critical header extensions (crit) that are not supported".to_owned(),
        )),
        _ => Ok(()),
    }
}

fn public_key(pem: &[u8]) -> Option<(DecodingKey, Algorithm)> {
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Some((key, Algorithm::EdDSA));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Some((key, Algorithm::ES256));
    }
    DecodingKey::from_rsa_pem(pem).ok().map(|key| (key, Algorithm::RS256))
}

fn principal(claims: Claims) -> Result<Principal, ApiError> {
    let bad = |msg: &str| ApiError::Unauthenticated(format!("invalid token: {msg}"));
    let role = match claims.role.as_str() {
        "admin" => Role::Admin,
        "app" => Role::App(claims.app_id.ok_or_else(|| bad("role app needs an app_id claim"))?),
        "operator" => {
            Role::Operator(claims.operator_id.ok_or_else(|| bad("role operator needs an operator_id claim"))?)
        }
        _ => return Err(bad("role must be admin, app or operator")),
    };
    let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or_else(|| bad("exp is out of range"))?;
    let scopes = Scopes::parse(claims.scope.as_deref()).map_err(|why| bad(&why))?;
    Ok(Principal { subject: claims.sub, role, expires_at, scopes })
}

/// Mints an HS256 token (development and tests).
pub fn mint(secret: &[u8], claims: &Claims) -> anyhow::Result<String> {
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))?)
}

/// Reads a bearer token out of an `Authorization` value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The claims of a link authorization's OAuth `state`.
#[derive(Serialize, Deserialize)]
pub struct StateClaims {
    aud: String,
    exp: i64,
    /// The link being authorized.
    pub link: Uuid,
    /// The operator who must authorize it (the link's operator).
    pub operator: Uuid,
    /// Must match the link's current nonce; spent on completion, so no replay.
    pub nonce: Uuid,
}

const STATE_AUDIENCE: &str = "curbpay:connect-state";
/// How long an authorization URL stays usable.
const STATE_TTL_SECONDS: i64 = 3600;

/// Signs the OAuth `state` of link authorizations (an HS256 JWT with its own audience,
/// so it can never pass as an API token and vice versa).
#[derive(Clone)]
pub struct StateSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl StateSigner {
    /// A signer keyed by `secret` (`CURBPAY_STATE_SECRET`, or the HS256 JWT secret).
    pub fn new(secret: &[u8]) -> StateSigner {
        StateSigner { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }

    /// A state naming the link, its operator and the link's current nonce.
    pub fn sign(&self, link: Uuid, operator: Uuid, nonce: Uuid) -> Result<String, ApiError> {
        let claims = StateClaims {
            aud: STATE_AUDIENCE.to_owned(),
            exp: Utc::now().timestamp() + STATE_TTL_SECONDS,
            link,
            operator,
            nonce,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal_caused("signing state", e))
    }

    /// The claims of a state this signer made and that has not expired.
    pub fn verify(&self, state: &str) -> Option<StateClaims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[STATE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        jsonwebtoken::decode::<StateClaims>(state, &self.decoding, &validation).ok().map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        let config = JwtConfig {
            key: JwtKey::Secret(SECRET.to_owned().into()),
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
        };
        JwtVerifier::new(&config, None).unwrap()
    }

    #[test]
    fn roles_round_trip() {
        let app = Uuid::now_v7();
        let token = mint(SECRET.as_bytes(), &Claims::new(Role::App(app), None, Duration::from_secs(60))).unwrap();
        let principal = verifier(None, None).verify(&token).unwrap();
        assert_eq!(principal.role, Role::App(app));
    }

    #[test]
    fn expired_forged_and_wrong_claims_are_rejected() {
        let v = verifier(None, None);
        let mut claims = Claims::new(Role::Admin, None, Duration::from_secs(60));
        claims.exp = Utc::now().timestamp() - 3600;
        let err = v.verify(&mint(SECRET.as_bytes(), &claims).unwrap()).unwrap_err();
        assert!(err.to_string().contains("expired"));

        let forged =
            mint(b"another-secret-another-secret-xx", &Claims::new(Role::Admin, None, Duration::from_secs(60)));
        assert!(v.verify(&forged.unwrap()).is_err());

        let mut claims = Claims::new(Role::Admin, None, Duration::from_secs(60));
        claims.role = "app".into();
        let err = v.verify(&mint(SECRET.as_bytes(), &claims).unwrap()).unwrap_err();
        assert!(err.to_string().contains("app_id"));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let v = verifier(Some("https://auth.example"), Some("curbpay"));
        let mut claims = Claims::new(Role::Admin, None, Duration::from_secs(60));
        assert!(v.verify(&mint(SECRET.as_bytes(), &claims).unwrap()).is_err());
        claims.iss = Some("https://auth.example".into());
        claims.aud = Some("curbpay".into());
        assert!(v.verify(&mint(SECRET.as_bytes(), &claims).unwrap()).is_ok());
    }

    #[test]
    fn the_header_algorithm_is_not_trusted() {
        // A token signed "none"-style or with another algorithm must not pass.
        let claims = Claims::new(Role::Admin, None, Duration::from_secs(60));
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
                .unwrap();
        assert!(verifier(None, None).verify(&token).is_err());
    }

    #[test]
    fn not_before_is_checked_with_the_leeway() {
        let v = verifier(None, None);
        let mut claims = Claims::new(Role::Admin, None, Duration::from_secs(3600 * 24 * 400));
        claims.nbf = Some(Utc::now().timestamp() + 3600 * 24 * 365);
        let err = v.verify(&mint(SECRET.as_bytes(), &claims).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not valid yet"), "{err}");
        // Within the leeway (clock skew) it passes.
        claims.nbf = Some(Utc::now().timestamp() + LEEWAY_SECS as i64 / 2);
        assert!(v.verify(&mint(SECRET.as_bytes(), &claims).unwrap()).is_ok());
    }

    #[test]
    fn critical_header_extensions_and_oversized_tokens_are_refused() {
        let claims = Claims::new(Role::Admin, None, Duration::from_secs(60));
        // Build a header with `crit` by hand and sign it properly.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(r#"{"alg":"HS256","typ":"JWT","crit":["exp-ext"],"exp-ext":1}"#);
        let payload = b64.encode(serde_json::to_vec(&claims).unwrap());
        let signing_input = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        let token = format!("{signing_input}.{signature}");
        let err = verifier(None, None).verify(&token).unwrap_err();
        assert!(err.to_string().contains("crit"), "{err}");

        let mut claims = Claims::new(Role::Admin, None, Duration::from_secs(60));
        claims.sub = "x".repeat(MAX_TOKEN_BYTES);
        let err = verifier(None, None).verify(&mint(SECRET.as_bytes(), &claims).unwrap()).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[test]
    fn scopes() {
        assert_eq!(Scopes::parse(None), Ok(Scopes::FULL));
        assert_eq!(Scopes::parse(Some("read")), Ok(Scopes::READ_ONLY));
        assert_eq!(Scopes::parse(Some("read write")), Ok(Scopes::FULL));
        assert_eq!(Scopes::parse(Some(" write ")), Ok(Scopes::FULL));
        assert!(Scopes::parse(Some("read wirte")).is_err());
        assert!(Scopes::parse(Some("admin")).is_err());
        assert!(Scopes::parse(Some("")).is_err());

        let v = verifier(None, None);
        let mut claims = Claims::new(Role::Admin, None, Duration::from_secs(60));
        claims.scope = Some("read".into());
        assert_eq!(v.verify(&mint(SECRET.as_bytes(), &claims).unwrap()).unwrap().scopes, Scopes::READ_ONLY);
        claims.scope = Some("reads".into());
        let err = v.verify(&mint(SECRET.as_bytes(), &claims).unwrap()).unwrap_err();
        assert!(err.to_string().contains("unknown scope"), "{err}");
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
