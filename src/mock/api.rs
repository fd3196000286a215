//! The API domain: routing, Privy and HMAC authentication, capabilities and tokens.

use super::*;

pub(super) struct TokenRecord {
    pub(super) key: Key,
    pub(super) profile: i64,
    pub(super) label: Option<String>,
    pub(super) scopes: Vec<Scope>,
    pub(super) created_at: String,
    pub(super) last_used_at: Option<String>,
    pub(super) revoked: bool,
}

/// Who a request authenticated as.
struct Caller {
    profile: i64,
    /// The scopes of the API token it signed with (`None` for Privy and the legacy key, which
    /// scopes do not limit).
    scopes: Option<Vec<Scope>>,
}

impl Caller {
    /// 403 as the API answers a token without one of `needs`, or `then`'s answer.
    fn scoped(&self, needs: &[Scope], then: impl FnOnce() -> MockResponse) -> MockResponse {
        match self
            .scopes
            .as_ref()
            .and_then(|held| needs.iter().find(|s| !held.contains(s)))
        {
            Some(scope) => message(
                StatusCode::FORBIDDEN,
                &format!("Requires apiToken auth with {scope} scope"),
            ),
            None => then(),
        }
    }
}

/// Whether a JSON body has `field: true`.
fn flag(body: &[u8], field: &str) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(field).and_then(Value::as_bool))
        .unwrap_or(false)
}

/// Random bytes from the standard library's randomly keyed hasher (good enough for a mock).
pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let r = crate::random_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    out
}

impl State {
    /// Routes as the real server's router does: methods and path literals compare ASCII
    /// case-insensitively and one trailing slash is ignored (as the route policy matches).
    pub(super) fn route(&self, rec: &mut RecordedRequest) -> MockResponse {
        let path = rec.path().to_owned();
        let trimmed = match path.strip_suffix('/') {
            Some(t) if !t.is_empty() => t,
            _ => path.as_str(),
        };
        let original: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
        let lower: Vec<String> = original.iter().map(|s| s.to_ascii_lowercase()).collect();
        let segments: Vec<&str> = lower.iter().map(String::as_str).collect();
        // Path parameters keep their case.
        let param = |i: usize| original.get(i).copied().unwrap_or_default();
        let m = rec.method.as_str().to_ascii_uppercase();
        match (m.as_str(), segments.as_slice()) {
            ("GET", ["auth", "api-tokens", "capabilities"]) => {
                self.privy(rec, |s, _, who| s.capabilities(who))
            }
            ("POST", ["auth", "api-tokens", "derive"]) => {
                self.privy(rec, |s, rec, who| s.derive(rec, who))
            }
            ("POST", ["portfolio", "withdrawal-addresses"]) => self.privy(rec, |_, rec, _| {
                match serde_json::from_slice::<Value>(&rec.body) {
                    Ok(v) => json_response(StatusCode::CREATED, &json!({"address": v["address"]})),
                    Err(_) => validation(&["address must be an Ethereum address"]),
                }
            }),
            ("DELETE", ["portfolio", "withdrawal-addresses", _]) if !param(2).is_empty() => self
                .privy(rec, |_, _, _| {
                    message(StatusCode::OK, "Withdrawal address removed")
                }),
            ("GET", ["auth", "api-tokens"]) => self.hmac(rec, true, |s, _, who| s.list(who)),
            ("GET", ["portfolio", "positions"]) => self.hmac(rec, true, |_, _, _| {
                json_response(StatusCode::OK, &json!([]))
            }),
            ("DELETE", ["auth", "api-tokens", _]) if !param(2).is_empty() => {
                let id = percent_encoding::percent_decode_str(param(2))
                    .decode_utf8_lossy()
                    .into_owned();
                self.hmac(rec, true, move |s, _, who| s.revoke(&id, who))
            }
            ("POST", ["orders"]) => self.hmac(rec, true, |s, rec, who| {
                who.scoped(&[Scope::Trading], || s.order(rec, &who))
            }),
            ("DELETE", ["orders", _]) if !param(1).is_empty() => {
                self.hmac(rec, true, |_, _, who| {
                    who.scoped(&[Scope::Trading], || {
                        message(StatusCode::OK, "Order cancelled")
                    })
                })
            }
            ("POST", ["portfolio", "withdraw"]) => self.privy_or_hmac(rec, |_, _, who| {
                who.scoped(&[Scope::Withdrawal], || {
                    message(StatusCode::OK, "Withdrawal submitted")
                })
            }),
            ("POST", ["portfolio", "redeem"]) => self.privy_or_hmac(rec, |_, _, who| {
                who.scoped(&[Scope::Trading], || {
                    message(StatusCode::OK, "Redeem submitted")
                })
            }),
            ("POST", ["amm", ..]) => self.privy_or_hmac(rec, |_, _, who| {
                who.scoped(&[Scope::Trading, Scope::DelegatedSigning], || {
                    message(StatusCode::OK, "AMM request accepted")
                })
            }),
            ("POST" | "DELETE", ["auth", "api-keys", ..]) => {
                if rec.has_hmac_or_api_key_header() {
                    message(
                        StatusCode::FORBIDDEN,
                        "API key management is only available via the UI",
                    )
                } else {
                    self.privy(rec, |_, _, _| message(StatusCode::OK, "API key updated"))
                }
            }
            (m, ["profiles", "partner-accounts", rest @ ..]) => self.partner_accounts(rec, m, rest),
            ("GET", ["markets", "active"]) => json_response(
                StatusCode::OK,
                &json!({"data": [{"slug": "btc-100k", "title": "BTC above 100k?"}], "totalMarketsCount": 1}),
            ),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({
                    "message": format!("Cannot {} {}", rec.method, path),
                    "error": "Not Found",
                    "statusCode": 404
                }),
            ),
        }
    }

    /// `/profiles/partner-accounts/**` (HMAC only), by method and the segments after it.
    fn partner_accounts(
        &self,
        rec: &mut RecordedRequest,
        method: &str,
        rest: &[&str],
    ) -> MockResponse {
        match (method, rest) {
            ("POST", []) => self.hmac(rec, false, |_, rec, who| {
                let mut needs = vec![Scope::AccountCreation];
                if flag(&rec.body, "createServerWallet") {
                    needs.push(Scope::DelegatedSigning);
                }
                who.scoped(&needs, || {
                    json_response(
                        StatusCode::CREATED,
                        &json!({"profileId": 1000 + who.profile, "account": PARTNER_ACCOUNT}),
                    )
                })
            }),
            ("GET", []) => self.hmac(rec, false, |_, _, who| {
                who.scoped(&[Scope::AccountCreation], || {
                    json_response(StatusCode::OK, &json!({"data": [], "total": 0}))
                })
            }),
            ("GET", [_, "allowances"]) => self.hmac(rec, false, |_, _, who| {
                who.scoped(&[Scope::AccountCreation, Scope::DelegatedSigning], || {
                    json_response(StatusCode::OK, &json!({"ready": true}))
                })
            }),
            ("POST", [_, "allowances", "retry"]) => self.hmac(rec, false, |_, _, who| {
                who.scoped(&[Scope::AccountCreation, Scope::DelegatedSigning], || {
                    json_response(StatusCode::ACCEPTED, &json!({"message": "Retry started"}))
                })
            }),
            _ => self.hmac(rec, false, |_, rec, who| match rec.method.as_str() {
                m if m.eq_ignore_ascii_case("POST") => json_response(
                    StatusCode::CREATED,
                    &json!({"profileId": 1000 + who.profile, "account": PARTNER_ACCOUNT}),
                ),
                _ => json_response(StatusCode::OK, &json!([])),
            }),
        }
    }

    /// Privy-only: identity header with a known token, and no HMAC or API-key header at all.
    fn privy(
        &self,
        rec: &mut RecordedRequest,
        then: impl FnOnce(&Self, &RecordedRequest, Caller) -> MockResponse,
    ) -> MockResponse {
        const REQUIRES: &str = "Requires Privy authentication";
        if rec.has_hmac_or_api_key_header() {
            return unauthorized(REQUIRES);
        }
        let token = rec
            .headers
            .get("identity")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let profile = match token {
            Some(PARTNER_IDENTITY) => PARTNER_PROFILE,
            Some(USER_IDENTITY) => USER_PROFILE,
            Some(token) => match lock(&self.minted).get(token) {
                Some(&(_, exp)) if self.clock.now_millis() >= exp => {
                    return unauthorized("Identity token expired");
                }
                Some(&(profile, _)) => profile,
                None => return unauthorized(REQUIRES),
            },
            None => return unauthorized(REQUIRES),
        };
        rec.mode = Some(AuthMode::Privy);
        then(
            self,
            rec,
            Caller {
                profile,
                scopes: None,
            },
        )
    }

    /// Who a socket handshake authenticates as: `Ok(None)` without credentials (public
    /// channels), `Ok(Some(profile))` for a valid HMAC signature or legacy key, `Err` with the
    /// message the REST routes would answer for a bad or stale one.
    pub(super) fn socket_caller(&self, rec: &mut RecordedRequest) -> Result<Option<i64>, String> {
        if !rec.has_hmac_or_api_key_header() {
            rec.mode = Some(AuthMode::None);
            return Ok(None);
        }
        let mut profile = None;
        let answer = self.hmac(rec, true, |_, _, who| {
            profile = Some(who.profile);
            json_response(StatusCode::OK, &json!({}))
        });
        match profile {
            Some(profile) => Ok(Some(profile)),
            None => Err(answer
                .into_body()
                .into_inner()
                .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "Unauthorized".to_owned())),
        }
    }

    /// HMAC (or, where `api_key_ok`, the legacy key): the signature is verified over what was
    /// received.
    fn hmac(
        &self,
        rec: &mut RecordedRequest,
        api_key_ok: bool,
        then: impl FnOnce(&Self, &RecordedRequest, Caller) -> MockResponse,
    ) -> MockResponse {
        let header = |name: &str| rec.headers.get(name).and_then(|v| v.to_str().ok());
        let (id, ts, sig) = (
            header("lmts-api-key"),
            header("lmts-timestamp"),
            header("lmts-signature"),
        );
        if id.is_none() && ts.is_none() && sig.is_none() {
            return match header("x-api-key") {
                Some(LEGACY_API_KEY) if api_key_ok => {
                    rec.mode = Some(AuthMode::ApiKey);
                    then(
                        self,
                        rec,
                        Caller {
                            profile: PARTNER_PROFILE,
                            scopes: None,
                        },
                    )
                }
                Some(_) if api_key_ok => unauthorized("Invalid API key"),
                _ => unauthorized("HMAC authentication required"),
            };
        }
        let (Some(id), Some(ts), Some(sig)) = (id, ts, sig) else {
            rec.signature_valid = Some(false);
            return unauthorized("Incomplete HMAC authentication headers");
        };
        let (key, profile, scopes) = {
            let tokens = lock(&self.tokens);
            match tokens.get(id) {
                Some(t) if !t.revoked => (t.key.clone(), t.profile, t.scopes.clone()),
                _ => {
                    rec.signature_valid = Some(false);
                    return unauthorized("Invalid or revoked API token");
                }
            }
        };
        let received = Received {
            method: rec.method.as_str(),
            target: &rec.target,
            body: &rec.body,
            timestamp: ts,
            signature: sig,
        };
        if let Err(e) = verify(&key, &received, self.clock.now_millis(), self.window_ms) {
            rec.signature_valid = Some(false);
            return unauthorized(match e {
                Refusal::MalformedTimestamp => "Invalid timestamp",
                Refusal::OutsideWindow => "Request timestamp expired",
                Refusal::BadSignature => "Invalid signature",
            });
        }
        rec.signature_valid = Some(true);
        rec.mode = Some(AuthMode::Hmac);
        let now = self.now_text();
        let id = id.to_owned();
        if let Some(t) = lock(&self.tokens).get_mut(&id) {
            t.last_used_at = Some(now);
        }
        then(
            self,
            rec,
            Caller {
                profile,
                scopes: Some(scopes),
            },
        )
    }

    /// Privy or HMAC (not the legacy key), whichever the request carries.
    fn privy_or_hmac(
        &self,
        rec: &mut RecordedRequest,
        then: impl FnOnce(&Self, &RecordedRequest, Caller) -> MockResponse,
    ) -> MockResponse {
        if rec.headers.contains_key("identity") && !rec.has_hmac_or_api_key_header() {
            self.privy(rec, then)
        } else {
            self.hmac(rec, false, then)
        }
    }

    /// (token management enabled, allowed scopes) of a profile.
    fn capability_row(&self, profile: i64) -> (bool, Vec<Scope>) {
        if profile == PARTNER_PROFILE {
            (
                true,
                vec![
                    Scope::Trading,
                    Scope::AccountCreation,
                    Scope::DelegatedSigning,
                    Scope::Withdrawal,
                ],
            )
        } else if self.legacy_no_row_default {
            (false, vec![])
        } else {
            (true, vec![Scope::Trading])
        }
    }

    fn capabilities(&self, who: Caller) -> MockResponse {
        let (enabled, scopes) = self.capability_row(who.profile);
        json_response(
            StatusCode::OK,
            &json!({
                "partnerProfileId": who.profile,
                "tokenManagementEnabled": enabled,
                "allowedScopes": scopes,
            }),
        )
    }

    fn derive(&self, rec: &RecordedRequest, who: Caller) -> MockResponse {
        let body: Value = if rec.body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&rec.body) {
                Ok(v @ Value::Object(_)) => v,
                _ => return validation(&["request body must be a JSON object"]),
            }
        };
        let label = match &body["label"] {
            Value::Null => None,
            Value::String(s) if s.chars().count() <= 128 => Some(s.clone()),
            Value::String(_) => {
                return validation(&["label must be shorter than or equal to 128 characters"]);
            }
            _ => return validation(&["label must be a string"]),
        };
        let scopes: Vec<Scope> = match &body["scopes"] {
            Value::Null => vec![Scope::Trading],
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item.as_str().map(Scope::parse) {
                        Some(s) if s.is_known() => out.push(s),
                        _ => {
                            return validation(&[
                                "each value in scopes must be one of the following values: \
                                 trading, account_creation, delegated_signing, withdrawal",
                            ]);
                        }
                    }
                }
                out
            }
            _ => return validation(&["scopes must be an array"]),
        };
        if scopes.contains(&Scope::DelegatedSigning) && !scopes.contains(&Scope::Trading) {
            return message(
                StatusCode::BAD_REQUEST,
                "delegated_signing requires trading",
            );
        }
        let (enabled, allowed) = self.capability_row(who.profile);
        if !enabled {
            return message(
                StatusCode::FORBIDDEN,
                "Token management is not enabled for this profile",
            );
        }
        if !scopes.iter().all(|s| allowed.contains(s)) {
            return message(
                StatusCode::FORBIDDEN,
                "Requested scopes are not allowed for this profile",
            );
        }
        let token_id = STANDARD.encode(random_bytes::<12>());
        let secret = STANDARD.encode(random_bytes::<32>());
        let Some(key) = Key::from_base64(&secret) else {
            return message(StatusCode::INTERNAL_SERVER_ERROR, "key generation failed");
        };
        let created_at = self.now_text();
        lock(&self.tokens).insert(
            token_id.clone(),
            TokenRecord {
                key,
                profile: who.profile,
                label,
                scopes: scopes.clone(),
                created_at: created_at.clone(),
                last_used_at: None,
                revoked: false,
            },
        );
        let account = if who.profile == PARTNER_PROFILE {
            PARTNER_ACCOUNT
        } else {
            "0x000000000000000000000000000000000000dEaD"
        };
        json_response(
            StatusCode::CREATED,
            &json!({
                "apiKey": token_id,
                "secret": secret,
                "tokenId": token_id,
                "createdAt": created_at,
                "scopes": scopes,
                "profile": {"id": who.profile, "account": account},
            }),
        )
    }

    fn list(&self, who: Caller) -> MockResponse {
        if !self.capability_row(who.profile).0 {
            return message(
                StatusCode::FORBIDDEN,
                "Token management is not enabled for this profile",
            );
        }
        let tokens = lock(&self.tokens);
        let mut list: Vec<(&String, &TokenRecord)> = tokens
            .iter()
            .filter(|(_, t)| t.profile == who.profile && !t.revoked)
            .collect();
        list.sort_by(|a, b| a.1.created_at.cmp(&b.1.created_at).then(a.0.cmp(b.0)));
        let items: Vec<Value> = list
            .into_iter()
            .map(|(id, t)| {
                json!({
                    "tokenId": id,
                    "label": t.label,
                    "scopes": t.scopes,
                    "createdAt": t.created_at,
                    "lastUsedAt": t.last_used_at,
                })
            })
            .collect();
        json_response(StatusCode::OK, &Value::Array(items))
    }

    fn revoke(&self, id: &str, who: Caller) -> MockResponse {
        let mut tokens = lock(&self.tokens);
        match tokens.get_mut(id) {
            Some(t) if t.profile == who.profile && !t.revoked => {
                t.revoked = true;
                message(StatusCode::OK, "API token revoked successfully")
            }
            _ => message(
                StatusCode::BAD_REQUEST,
                "API token not found or already revoked",
            ),
        }
    }

    fn order(&self, rec: &RecordedRequest, who: &Caller) -> MockResponse {
        let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
            return validation(&["order must be a JSON object"]);
        };
        let id = self.orders.fetch_add(1, Ordering::Relaxed) + 1;
        json_response(
            StatusCode::CREATED,
            &json!({
                "id": id,
                "ownerId": who.profile,
                "clientOrderId": body.get("clientOrderId").cloned().unwrap_or(Value::Null),
            }),
        )
    }
}
