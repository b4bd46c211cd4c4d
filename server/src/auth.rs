//! Who may chat (`--auth`): anyone (`open`), people signed in to an account of this server
//! (`accounts`), or people the operator's own site signed a token for (`token`), as a
//! Centrifugo connection token does: a JWT, HS256 with a shared secret or EdDSA with an
//! Ed25519 key, naming the person (`sub`), what they are called (`name`), optionally the rooms
//! they may enter (`rooms`), and when it stops being good (`exp`).
//!
//! Tokens are verified with the `jsonwebtoken` crate: the algorithm must be the one configured
//! (so `alg: none`, and an HMAC token made with a public key as its secret, are refused), the
//! signature must hold, `exp` must be in the future and `nbf` (if any) in the past, within
//! [`LEEWAY_SECS`], and `aud` must be `--auth-token-audience` (a token naming an audience is
//! refused when none is configured).

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthMode, AuthOptions};
use crate::room_state::{SignedIn, TOKEN_ID};

/// Clock difference between the signing site and this server that `exp` and `nbf` tolerate.
pub const LEEWAY_SECS: u64 = 10;
/// The shortest HMAC secret accepted: 256 bits, as RFC 7518 asks of HS256.
pub const MIN_SECRET_BYTES: usize = 32;
/// The most rooms one token may name, and the longest token read: a token is the caller's
/// input, checked before anything is kept from it.
pub const MAX_TOKEN_ROOMS: usize = 256;
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// How the server tells who a connection is.
#[derive(Debug, Clone)]
pub enum Gate {
    /// Anyone may chat; the session cookie signs in, if there is one.
    Open,
    /// Only connections with a session cookie may chat.
    Accounts,
    /// Only connections with a good token may chat.
    Token(Box<TokenVerifier>),
}

impl Gate {
    /// The gate `--auth` and its options ask for; an error says what is missing or wrong.
    pub fn from_options(options: &AuthOptions) -> Result<Gate, String> {
        let token_settings = options.auth_token_secret.is_some()
            || options.auth_token_key.is_some()
            || options.auth_token_audience.is_some();
        match options.mode {
            // A token key without the mode would leave the chat open to anyone: a forgotten
            // or misspelt --auth must not do that quietly.
            _ if token_settings && options.mode != AuthMode::Token => {
                Err("--auth-token-secret, --auth-token-key and --auth-token-audience need \
                 --auth token (without it, anyone may chat)"
                    .into())
            }
            AuthMode::Open => Ok(Gate::Open),
            AuthMode::Accounts => Ok(Gate::Accounts),
            AuthMode::Token => TokenVerifier::from_options(options).map(|v| Gate::Token(v.into())),
        }
    }
}

/// Checks tokens against one key.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenVerifier({:?})", self.validation.algorithms)
    }
}

/// What a good token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    pub who: SignedIn,
    /// The rooms the token lets its holder enter (`None`: any).
    pub rooms: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Claims {
    /// Required (a missing one is refused as empty, below, in the same words).
    #[serde(default)]
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    /// The rooms the holder moderates (`*`: every room).
    #[serde(default)]
    moderates: Vec<String>,
}

impl TokenVerifier {
    fn from_options(options: &AuthOptions) -> Result<TokenVerifier, String> {
        let audience = options.auth_token_audience.as_deref();
        match (&options.auth_token_secret, &options.auth_token_key) {
            (Some(secret), None) => TokenVerifier::hmac(secret.expose().as_bytes(), audience),
            (None, Some(file)) => TokenVerifier::ed25519_file(file, audience),
            _ => Err("--auth token needs either --auth-token-secret (HS256) or \
                      --auth-token-key (an Ed25519 public key in PEM, EdDSA)"
                .into()),
        }
    }

    /// Tokens signed with HS256 and `secret` (at least [`MIN_SECRET_BYTES`]).
    pub fn hmac(secret: &[u8], audience: Option<&str>) -> Result<TokenVerifier, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "--auth-token-secret has {} bytes; an HS256 secret needs at least \
                 {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)",
                secret.len()
            ));
        }
        Ok(TokenVerifier::new(DecodingKey::from_secret(secret), Algorithm::HS256, audience))
    }

    /// Tokens signed with EdDSA by the private half of the Ed25519 public key in `pem`.
    pub fn ed25519(pem: &[u8], audience: Option<&str>) -> Result<TokenVerifier, String> {
        let key = DecodingKey::from_ed_pem(pem)
            .map_err(|error| format!("not an Ed25519 public key in PEM: {error}"))?;
        Ok(TokenVerifier::new(key, Algorithm::EdDSA, audience))
    }

    fn ed25519_file(file: &Path, audience: Option<&str>) -> Result<TokenVerifier, String> {
        let pem = std::fs::read(file)
            .map_err(|error| format!("cannot read --auth-token-key {}: {error}", file.display()))?;
        TokenVerifier::ed25519(&pem, audience)
            .map_err(|error| format!("--auth-token-key {}: {error}", file.display()))
    }

    fn new(key: DecodingKey, algorithm: Algorithm, audience: Option<&str>) -> TokenVerifier {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(audience) = audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".into());
        }
        TokenVerifier { key, validation }
    }

    /// Who `token` names, or why it is refused (in words for the person, without the token).
    /// The name and rooms are checked as nicks and room names are.
    pub fn verify(
        &self,
        token: &str,
        max_nick_chars: usize,
        max_room_chars: usize,
    ) -> Result<TokenIdentity, String> {
        use jsonwebtoken::errors::ErrorKind;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("The token is longer than {MAX_TOKEN_BYTES} bytes."));
        }
        // The header first: `alg: none` (which the crate cannot even parse) and any other
        // algorithm than the configured one are refused alike.
        let algorithm = self.validation.algorithms[0];
        match jsonwebtoken::decode_header(token) {
            Ok(header) if header.alg == algorithm => {}
            Ok(_) => return Err(format!("The token must be signed with {algorithm:?}.")),
            Err(error) if matches!(error.kind(), ErrorKind::Json(_)) => {
                return Err(format!("The token must be signed with {algorithm:?}."));
            }
            Err(_) => return Err("The token is not valid (not a JWT).".into()),
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => "The token has expired: get a fresh one.".into(),
                ErrorKind::ImmatureSignature => "The token is not good yet (nbf).".into(),
                ErrorKind::InvalidAudience => "The token is for another site (aud).".into(),
                ErrorKind::InvalidSignature => "The token's signature does not hold.".into(),
                ErrorKind::MissingRequiredClaim(claim) => format!("The token has no {claim}."),
                _ => format!("The token is not valid ({error})."),
            })?
            .claims;
        if claims.sub.is_empty() {
            return Err("The token has no sub.".into());
        }
        let name = claims.name.unwrap_or_else(|| claims.sub.clone());
        let nick = crate::names::check_nick(&name, max_nick_chars)
            .map_err(|error| format!("The token's name cannot be a nick: {}", error.message))?;
        let rooms = match claims.rooms {
            Some(rooms) if rooms.len() > MAX_TOKEN_ROOMS => {
                return Err(format!("The token names more than {MAX_TOKEN_ROOMS} rooms."));
            }
            // As joins name them (the rules normalise names): a room the rules refuse is an
            // error of the site's, said rather than silently never matching.
            Some(rooms) => Some(
                rooms
                    .iter()
                    .map(|room| protocol::rules::check_room(room, max_room_chars))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| format!("The token names a bad room: {}", error.message))?,
            ),
            None => None,
        };
        if claims.moderates.len() > MAX_TOKEN_ROOMS {
            return Err(format!("The token moderates more than {MAX_TOKEN_ROOMS} rooms."));
        }
        let moderates = claims
            .moderates
            .iter()
            .map(|room| match room.as_str() {
                "*" => Ok("*".to_owned()),
                room => protocol::rules::check_room(room, max_room_chars),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("The token moderates a bad room: {}", error.message))?;
        let who = SignedIn { id: format!("{TOKEN_ID}{}", claims.sub), nick, since: 0, moderates };
        Ok(TokenIdentity { who, rooms })
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
        let key = EncodingKey::from_secret(secret);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("signs")
    }

    /// An unsigned token as an attacker writes it: `{"alg":"none"}`, the claims, no signature.
    fn unsigned(claims: &serde_json::Value) -> String {
        use base64::Engine;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        format!("{header}.{}.", encode(claims.to_string().as_bytes()))
    }

    /// A good token names its holder (by `sub`, shown as `name`) and its rooms (normalised as
    /// joins' are); every forgery or stale token is refused with words that say why.
    #[test]
    fn tokens_are_verified_as_a_table() {
        let verifier = TokenVerifier::hmac(SECRET, Some("chat.example")).expect("verifier");
        let good = json!({"sub": "u-17", "name": "Ann", "rooms": [" Team "], "exp": now() + 600,
                          "aud": "chat.example"});
        let identity = verifier.verify(&hs256(&good, SECRET), 32, 64).expect("a good token");
        assert_eq!(
            identity.who,
            SignedIn { id: "token:u-17".into(), nick: "Ann".into(), since: 0, moderates: vec![] }
        );
        assert_eq!(identity.rooms, Some(vec!["team".to_owned()]));

        let with = |change: serde_json::Value| {
            let mut claims = good.clone();
            for (key, value) in change.as_object().expect("object") {
                match value {
                    serde_json::Value::Null => claims.as_object_mut().expect("o").remove(key),
                    value => claims.as_object_mut().expect("o").insert(key.clone(), value.clone()),
                };
            }
            hs256(&claims, SECRET)
        };
        let refused = [
            (unsigned(&good), "must be signed with HS256"),
            (hs256(&good, b"another secret, just as long as it"), "signature does not hold"),
            (with(json!({"exp": now() - 3600})), "has expired"),
            (with(json!({"exp": null})), "has no exp"),
            (with(json!({"sub": null})), "has no sub"),
            (with(json!({"aud": "other.example"})), "another site"),
            (with(json!({"aud": null})), "has no aud"),
            (with(json!({"nbf": now() + 3600})), "not good yet"),
            (with(json!({"name": "a\u{7}b"})), "cannot be a nick"),
            // Invisible and direction characters, as for every other nick (one would pass as
            // "bob" and could not be named in a moderate).
            (with(json!({"name": "bob\u{200B}"})), "cannot be a nick"),
            (with(json!({"name": "\u{202E}bob"})), "cannot be a nick"),
            (with(json!({"rooms": vec!["r"; MAX_TOKEN_ROOMS + 1]})), "more than 256 rooms"),
            (with(json!({"rooms": ["ok", "no/slash"]})), "a bad room"),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "longer than"),
            ("not.a.token".into(), "not valid"),
        ];
        for (token, why) in refused {
            let error = verifier.verify(&token, 32, 64).expect_err(why);
            assert!(error.contains(why), "{why}: {error}");
        }
        // Without `name`, the subject is the nick; within the leeway, a just-expired token is
        // still good.
        let plain = with(json!({"name": null, "exp": now() - LEEWAY_SECS / 2}));
        assert_eq!(verifier.verify(&plain, 32, 64).expect("good").who.nick, "u-17");
    }

    /// Without a configured audience, a token that names one is refused (it is for a site
    /// that checks it), and one that names none is good.
    #[test]
    fn a_token_for_some_audience_needs_one_configured() {
        let verifier = TokenVerifier::hmac(SECRET, None).expect("verifier");
        let plain = json!({"sub": "u", "exp": now() + 60});
        assert!(verifier.verify(&hs256(&plain, SECRET), 32, 64).is_ok());
        let aimed = json!({"sub": "u", "exp": now() + 60, "aud": "elsewhere"});
        assert!(verifier.verify(&hs256(&aimed, SECRET), 32, 64).is_err());
    }

    /// EdDSA: a token signed by the private half of the configured Ed25519 key is good; one
    /// signed by another key, or an HS256 token using the public key as its secret (the old
    /// algorithm-confusion forgery), is refused.
    #[test]
    fn ed25519_tokens() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key pair");
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key pair");
        let public = pair.public_key_pem();
        let verifier = TokenVerifier::ed25519(public.as_bytes(), None).expect("verifier");
        let claims = json!({"sub": "u-1", "name": "Bo", "exp": now() + 60});
        let sign = |pair: &rcgen::KeyPair| {
            let key = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).expect("key");
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).expect("signs")
        };
        assert_eq!(verifier.verify(&sign(&pair), 32, 64).expect("good").who.nick, "Bo");
        assert!(verifier.verify(&sign(&other), 32, 64).expect_err("refused").contains("signature"));
        let confused = hs256(&claims, public.as_bytes());
        assert!(
            verifier
                .verify(&confused, 32, 64)
                .expect_err("refused")
                .contains("must be signed with EdDSA")
        );
    }

    /// A short secret is refused at start, as is a key file that holds no Ed25519 key.
    #[test]
    fn weak_or_wrong_keys_are_refused_at_start() {
        assert!(TokenVerifier::hmac(b"short", None).expect_err("refused").contains("at least 32"));
        assert!(TokenVerifier::ed25519(b"not pem", None).is_err());
    }
}
