//! The doors of a page's form posts, so that no handler can forget one:
//!
//! - [`CsrfForm<T>`] reads the urlencoded form and hands it over only when its `csrf` field
//!   matches the browser's token (the CSRF cookie), compared in constant time. A form that does
//!   not parse is refused as axum's `Form` refuses it (the "Incomplete form" page); a missing or
//!   wrong token gets 400 and the "form has expired" page, which sets no cookie.
//! - [`SignedIn<R, T>`] is the same form of a signed-in user: the browser, its session and the
//!   checked form. The token is checked first, then the session; a post without one is
//!   redirected to sign in, coming back to `R`'s page.
//!
//! The form structs have no `csrf` field: handlers never see the token. `tests/it/layering.rs`
//! fails when a page handler takes a plain `Form` or checks a token itself.

use std::marker::PhantomData;

use axum::body::{Body, Bytes};
use axum::extract::{Form, FromRequest, FromRequestParts, RawForm, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::PrivateCookieJar;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::context::{Browser, CSRF_COOKIE, Session, refuse_cross_site};
use super::error::PageError;
use super::login::login_url;
use crate::crypto::constant_time_eq;
use crate::http::AppState;

/// A form post whose `csrf` field matched the browser's token.
pub struct CsrfForm<T>(pub T);

/// The form post of a signed-in user: its browser (cookies, CSRF token), session and form.
pub struct SignedIn<R, T> {
    pub browser: Browser,
    pub session: Session,
    pub form: T,
    return_to: PhantomData<R>,
}

/// The page a signed-out post is sent back to after signing in (`/login?next=…`).
pub trait ReturnTo {
    fn url(parts: &mut Parts) -> impl Future<Output = String> + Send;
}

/// The form of a post that is only a button: any fields but the token are ignored.
#[derive(Deserialize)]
pub struct NoFields {}

/// The token field, read apart from the handler's form.
#[derive(Deserialize)]
struct Token {
    csrf: Option<String>,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        refuse_cross_site(&parts).map_err(IntoResponse::into_response)?;
        let expected = cookie_token(&mut parts, state).await?;
        let RawForm(bytes) = RawForm::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = parse::<T>(&bytes).await?;
        // Only fails on a repeated `csrf` field, as the form with the field in it used to.
        let Token { csrf } = parse::<Token>(&bytes).await?;
        match (csrf, expected) {
            (Some(sent), Some(expected)) if constant_time_eq(sent.as_bytes(), expected.as_bytes()) => {
                Ok(CsrfForm(form))
            }
            _ => Err(PageError::bad_request("This form has expired. Go back, reload the page and try again.")
                .into_response()),
        }
    }
}

impl<R: ReturnTo, T: DeserializeOwned + Send> FromRequest<AppState> for SignedIn<R, T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let browser = Browser::from_request_parts(&mut parts, state).await.map_err(IntoResponse::into_response)?;
        let back_to = R::url(&mut parts).await;
        let CsrfForm(form) = CsrfForm::<T>::from_request(Request::from_parts(parts, body), state).await?;
        match &browser.session {
            Some(s) => {
                let session = s.clone();
                Ok(SignedIn { browser, session, form, return_to: PhantomData })
            }
            None => Err(Redirect::to(&login_url(&back_to)).into_response()),
        }
    }
}

/// The browser's CSRF token, if it has one (`Browser` gives a browser without one a new token,
/// which no form can carry yet).
async fn cookie_token(parts: &mut Parts, state: &AppState) -> Result<Option<String>, Response> {
    let jar = PrivateCookieJar::<axum_extra::extract::cookie::Key>::from_request_parts(parts, state)
        .await
        .map_err(|_| PageError::internal("cookie jar").into_response())?;
    Ok(jar.get(CSRF_COOKIE).map(|c| c.value().to_string()).filter(|v| v.len() >= 32))
}

/// `bytes` as the form `T`, refused exactly as axum's `Form` refuses a body it cannot read.
async fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Response> {
    let mut req = Request::new(Body::from(bytes.clone()));
    *req.method_mut() = Method::POST;
    req.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    let Form(form) = Form::<T>::from_request(req, &()).await.map_err(IntoResponse::into_response)?;
    Ok(form)
}
