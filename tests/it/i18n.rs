//! Every page in English and German, chosen by the browser's `Accept-Language`: each page is
//! fetched with `de` and with `en`, and must carry `<html lang>`, a text of its own in that
//! language and no "missing text" marker. English pages keep the exact texts other tests assert.

use reqwest::header::{ACCEPT, ACCEPT_LANGUAGE, HeaderMap, HeaderValue};

use crate::flows::{self, PUBLIC_CLIENT, REDIRECT, csrf_of, location};
use crate::helpers::{self, TestApp};

const PATCH: &str = "account:
  password_registration_enabled: true
  password_recovery_enabled: true
  account_deactivation_allowed: true
email:
  transport: blackhole
";

/// A browser that asks for `accept_language`: cookies on, redirects off.
fn browser(accept_language: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT_LANGUAGE, HeaderValue::from_str(accept_language).expect("header"));
    headers.insert(ACCEPT, HeaderValue::from_static("text/html"));
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}

async fn sign_in(app: &TestApp, client: &reqwest::Client, next: &str) -> String {
    let html = client.get(app.url(&format!("/login?next={}", flows::urlencode(next)))).send().await.unwrap();
    let html = html.text().await.unwrap();
    let res = client
        .post(app.url("/login"))
        .form(&[("csrf", csrf_of(&html).as_str()), ("username", "alice"), ("password", PASSWORD), ("next", next)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "sign-in failed");
    location(&res)
}

const PASSWORD: &str = "correct horse battery staple";

/// A page in `lang`: its language attribute, the expected text, no missing message.
fn check(page: &str, lang: &str, html: &str, expected: &str) {
    assert!(html.contains(&format!("<html lang=\"{lang}\"")), "{page} in {lang}: no <html lang=\"{lang}\">:\n{html}");
    assert!(html.contains(expected), "{page} in {lang} does not say {expected:?}:\n{html}");
    for marker in ["(missing text)", "(Text fehlt)"] {
        assert!(!html.contains(marker), "{page} in {lang} has a missing message:\n{html}");
    }
}

/// The pages, each with what it says in German and in English.
async fn walk(app: &TestApp, accept_language: &str, lang: &str) {
    let de = lang == "de";
    let says = |g: &'static str, e: &'static str| if de { g } else { e };
    let client = browser(accept_language);
    let get = |path: String| {
        let client = client.clone();
        async move { client.get(app.url(&path)).send().await.unwrap() }
    };

    let res = get("/login".into()).await;
    assert_eq!(res.headers()["content-language"], lang);
    let html = res.text().await.unwrap();
    check("/login", lang, &html, says("<h1>Anmelden</h1>", "<h1>Sign in</h1>"));
    check("/login", lang, &html, says("Passwort vergessen?", "Forgot password?"));

    // A form error made in Rust, translated on the page.
    let res = client
        .post(app.url("/login"))
        .form(&[("csrf", csrf_of(&html).as_str()), ("username", "alice"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    let html = res.text().await.unwrap();
    check(
        "/login (wrong password)",
        lang,
        &html,
        says("Benutzername oder Passwort ist falsch.", "Invalid username or password."),
    );

    let html = get("/register".into()).await.text().await.unwrap();
    check("/register", lang, &html, says("Sie haben schon ein Konto?", "Already have an account?"));
    // Field errors with values, made in Rust in the request's language.
    let form = [("csrf", csrf_of(&html)), ("username", "@bob:elsewhere".into()), ("password", "password".into())];
    let html = client.post(app.url("/register")).form(&form).send().await.unwrap().text().await.unwrap();
    check(
        "/register (errors)",
        lang,
        &html,
        says("Wählen Sie einen Benutzernamen auf localhost", "Choose a username on localhost"),
    );
    check(
        "/register (errors)",
        lang,
        &html,
        says("Dieses Passwort ist zu leicht zu erraten.", "This password is too easy to guess."),
    );
    check(
        "/register (errors)",
        lang,
        &html,
        says(
            "Stärke des eingegebenen Passworts: <strong>Sehr schwach</strong>",
            "Strength of the password you entered: <strong>Very weak</strong>",
        ),
    );

    let html = get("/recover".into()).await.text().await.unwrap();
    check("/recover", lang, &html, says("Link senden", "Send the link"));
    let res = client.post(app.url("/recover")).form(&[("csrf", csrf_of(&html).as_str()), ("email", "nope")]).send();
    let html = res.await.unwrap().text().await.unwrap();
    check("/recover (bad address)", lang, &html, says("Geben Sie eine E-Mail-Adresse ein", "Enter an email address"));

    let html = get("/no-such-page".into()).await.text().await.unwrap();
    check("404", lang, &html, says("Unter dieser Adresse gibt es keine Seite.", "There is no page at this address."));
    check("404", lang, &html, says("<h1>Nicht gefunden</h1>", "<h1>Not found</h1>"));

    // The consent page of an OAuth client, reached by signing in from /authorize.
    let pkce = flows::pkce();
    let query = [
        ("response_type", "code"),
        ("client_id", PUBLIC_CLIENT),
        ("redirect_uri", REDIRECT),
        ("scope", "openid urn:matrix:org.matrix.msc2967.client:api:*"),
        ("state", "s"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let url = reqwest::Url::parse_with_params(&app.url("/authorize"), &query).unwrap();
    let login_url = location(&client.get(url).send().await.unwrap());
    let html = get(login_url.clone()).await.text().await.unwrap();
    check("/login from /authorize", lang, &html, says("mit Ihrem Konto auf <strong>", "with your <strong>"));
    let next = url::Url::parse(&format!("http://x{login_url}")).unwrap();
    let next = next.query_pairs().find(|(k, _)| k == "next").map(|(_, v)| v.into_owned()).expect("next");
    let consent = sign_in(app, &client, &next).await;
    let html = get(consent).await.text().await.unwrap();
    check("consent", lang, &html, says("Zugriff erlauben", "Allow access"));
    check("consent", lang, &html, says("Ihr Konto zum Chatten verwenden", "Use your account for chat"));
    check("consent", lang, &html, says("Angemeldet als", "Signed in as"));

    // The account pages.
    for (path, german, english) in [
        ("/account/", "Anzeigenamen speichern", "Save display name"),
        ("/account/?action=org.matrix.sessions_list", "Wo Sie angemeldet sind", "Where you’re signed in"),
        ("/account/emails", "Adresse hinzufügen", "Add an address"),
        ("/account/?action=org.matrix.account_deactivate", "Mein Konto löschen", "Delete my account"),
        ("/account/?action=org.matrix.cross_signing_reset", "Zurücksetzen erlauben", "Allow the reset"),
        ("/link", "Gerät verknüpfen", "Link a device"),
        ("/account/mfa", "Authenticator-App einrichten", "Set up an authenticator app"),
    ] {
        let html = get(path.into()).await.text().await.unwrap();
        check(path, lang, &html, says(german, english));
    }

    // A field error from the account page.
    let html = get("/account/".into()).await.text().await.unwrap();
    let form = [
        ("csrf", csrf_of(&html)),
        ("current_password", "not it".to_string()),
        ("new_password", "another long passphrase here".to_string()),
        ("new_password_confirm", "another long passphrase here".to_string()),
    ];
    let html = client.post(app.url("/account/password")).form(&form).send().await.unwrap().text().await.unwrap();
    check(
        "/account/password (wrong password)",
        lang,
        &html,
        says("Dieses Passwort ist nicht richtig.", "That password is not correct."),
    );
}

#[tokio::test]
async fn every_page_renders_in_german_and_in_english() {
    let app = helpers::spawn_app_with(&format!("{PATCH}{}", flows::clients_patch())).await;
    flows::register_user(&app, "alice", PASSWORD, false).await;
    // q-values, regional variants and the English fallback.
    walk(&app, "de-AT, en;q=0.5", "de").await;
    walk(&app, "fr-FR, en;q=0.8, de;q=0.7", "en").await;
}

#[tokio::test]
async fn the_recovery_email_is_in_the_language_of_the_page_that_asked_for_it() {
    let smtp = crate::email::Smtp::start();
    let patch = format!("account:\n  password_recovery_enabled: true\n{}\n", crate::email::smtp_config(smtp.port));
    let app = helpers::spawn_app_with(&patch).await;
    let s = &app.state;
    let alice = appliance::lifecycle::users::NewUser {
        username: "alice".into(),
        password: Some(PASSWORD.into()),
        emails: vec!["alice@example.org".into()],
        display_name: None,
        admin: false,
    };
    appliance::lifecycle::users::register(&s.store, &s.passwords, s.clock.as_ref(), s.rng.as_ref(), alice)
        .await
        .expect("register");
    for (n, (accept_language, lang, subject, text)) in [
        ("de-DE,de;q=0.9", "de", "Passwort für @alice:localhost zurücksetzen", "Der Link funktioniert einmal."),
        ("en-GB", "en", "Reset your password for @alice:localhost", "The link works once."),
    ]
    .into_iter()
    .enumerate()
    {
        let client = browser(accept_language);
        let html = client.get(app.url("/recover")).send().await.unwrap().text().await.unwrap();
        let form = [("csrf", csrf_of(&html)), ("email", "alice@example.org".to_string())];
        let res = client.post(app.url("/recover")).form(&form).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let mail = smtp.wait_for(n + 1).await;
        assert_eq!(mail["subject"], subject, "{mail}");
        assert!(mail["text"].as_str().expect("text part").contains(text), "{mail}");
        let html = mail["html"].as_str().expect("html part");
        assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{html}");
    }
}

/// `branding.default_language` answers browsers that ask for none of our languages; a browser
/// naming one of them still gets it.
#[tokio::test]
async fn the_configured_default_language_serves_browsers_asking_for_no_language_of_ours() {
    let app = helpers::spawn_app_with("branding:\n  default_language: de\n").await;
    for (accept_language, lang) in [("fr-FR, fr;q=0.9", "de"), ("*", "de"), ("en-GB", "en"), ("de-AT", "de")] {
        let html = browser(accept_language).get(app.url("/login")).send().await.unwrap().text().await.unwrap();
        assert!(html.contains(&format!("<html lang=\"{lang}\"")), "Accept-Language {accept_language}: not {lang}");
    }
    let bare = reqwest::Client::new().get(app.url("/login")).header(ACCEPT, "text/html").send().await.unwrap();
    assert!(bare.text().await.unwrap().contains("<html lang=\"de\""), "no Accept-Language: not the default");
}
