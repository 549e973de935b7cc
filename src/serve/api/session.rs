//! Browser sessions: signing in with a token for a cookie, signing out.

use super::*;

/// The body of `POST /api/session`. No `Debug`: it holds a token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// An API token (`dsm tokens create`).
    pub token: String,
}

/// Who a session acts as.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The organisation it is limited to.
    pub organisation: Option<String>,
    /// When the token (and so the session) expires; sessions also end after 12 hours idle.
    pub expires_at: Option<String>,
}

/// Signs a browser in: checks the token and sets the `HttpOnly`, `SameSite=Strict` cookie
/// `dsm_session`, which then stands for the token. Needs no `Authorization` header.
#[utoipa::path(post, path = "/api/session", tag = "session", security(()),
    request_body = SessionRequest,
    responses((status = 201, body = SessionInfo, headers(("Set-Cookie" = String, description = "dsm_session"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_session(
    State(app): State<Arc<App>>,
    axum::extract::ConnectInfo(crate::serve::Peer(peer)): axum::extract::ConnectInfo<
        crate::serve::Peer,
    >,
    ApiJson(body): ApiJson<SessionRequest>,
) -> Result<Response, Problem> {
    let now = std::time::Instant::now();
    if let Some(secs) = app.limiter.blocked_for(peer.ip(), now) {
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts from this address",
        )
        .detail(format!("try again in {secs} s with a valid token"));
        problem.retry_after = Some(secs);
        return Err(problem);
    }
    let store = app.store.clone();
    let token = body.token;
    let found = blocking(move || {
        let tokens = store.list_tokens()?;
        Ok(crate::serve::token::authenticate(
            &tokens,
            &token,
            Utc::now(),
        ))
    })
    .await?;
    let Some(record) = found else {
        app.limiter.record_failure(peer.ip(), now);
        return Err(Problem::unauthorized("the token is not valid")
            .detail("it may be mistyped, revoked or expired; `dsm tokens list` shows the tokens"));
    };
    let id = app.sessions.create(record.token_hash.clone(), now);
    let mut cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        crate::serve::auth::SESSION_COOKIE,
        id.as_str()
    );
    if app.secure_cookies {
        cookie.push_str("; Secure");
    }
    if let Some(at) = record.expires_at {
        let secs = (at - Utc::now()).num_seconds().max(0);
        cookie.push_str(&format!("; Max-Age={secs}"));
    }
    let info = SessionInfo {
        name: record.name.clone(),
        role: record.role,
        organisation: record.organisation.clone(),
        expires_at: record.expires_at.map(crate::store::format_time),
    };
    let mut response = (StatusCode::CREATED, Json(info)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| Problem::internal())?,
    );
    response.extensions_mut().insert(Caller {
        name: record.name,
        role: record.role,
        organisation: record.organisation,
    });
    Ok(response)
}

/// Signs a browser out: ends the session of the `dsm_session` cookie and clears the cookie.
#[utoipa::path(delete, path = "/api/session", tag = "session", security(()),
    responses((status = 204, description = "The session ended (or there was none)")))]
pub(super) async fn end_session(
    State(app): State<Arc<App>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(id) = crate::serve::auth::session_cookie(&headers) {
        app.sessions.end(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("dsm_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}
