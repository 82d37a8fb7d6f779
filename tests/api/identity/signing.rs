//! RS256 and EdDSA signing: key ids, the JWKS, rotation (older keys keep verifying), and the
//! algorithm-confusion attacks: HS256 "signed" with the RSA public key, unknown `kid`.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use kailash_gateway::config::JwtAlgorithm;
use reqwest::Method;
use serde_json::json;

use super::*;

fn write_keys(dir: &TempPath, algorithm: &'static rcgen::SignatureAlgorithm, kids: &[&str]) {
    std::fs::create_dir_all(&dir.0).unwrap();
    for kid in kids {
        let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
        std::fs::write(dir.0.join(format!("{kid}.pem")), key.serialize_pem()).unwrap();
    }
}

fn header_of(token: &str) -> Value {
    jsonwebtoken::decode_header(token)
        .map(|h| json!({"alg": format!("{:?}", h.alg), "kid": h.kid}))
        .unwrap()
}

fn claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "mallory", "iss": "kailash-gateway", "aud": "kailash-api", "exp": now + 600,
           "iat": now, "jti": uuid::Uuid::new_v4().to_string(), "token_type": "access",
           "roles": ["admin"]})
}

async fn status(app: &TestApp, token: &str) -> u16 {
    app.request(Method::GET, "/api/sessions")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn eddsa_tokens_carry_the_newest_kid_and_older_keys_still_verify() {
    let dir = TempPath::new("keys");
    write_keys(&dir, &rcgen::PKCS_ED25519, &["2026-10", "2026-11"]);
    let keys_dir = dir.0.clone();
    let app = spawn_app_with(|s| {
        s.jwt_algorithm = JwtAlgorithm::EdDSA;
        s.jwt_keys_dir = Some(keys_dir);
    })
    .await;
    let token = admin_token(&app).await;
    assert_eq!(header_of(&token), json!({"alg": "EdDSA", "kid": "2026-11"}));
    assert_eq!(status(&app, &token).await, 200);

    let jwks = json(
        app.request(Method::GET, "/.well-known/jwks.json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let kids: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids, [json!("2026-10"), json!("2026-11")]);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private part is published"
    );

    // A token of the older key (issued before the rotation) still verifies.
    let old = std::fs::read(dir.0.join("2026-10.pem")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("2026-10".into());
    let by_old_key = encode(&header, &claims(), &EncodingKey::from_ed_pem(&old).unwrap()).unwrap();
    assert_eq!(status(&app, &by_old_key).await, 200);
    header.kid = Some("2025-01".into());
    let unknown_kid = encode(&header, &claims(), &EncodingKey::from_ed_pem(&old).unwrap()).unwrap();
    assert_eq!(status(&app, &unknown_kid).await, 401);
    // Tokens minted with the shared secret (Kailash programs) keep working.
    assert_eq!(status(&app, &app.token_for("legacy")).await, 200);
}

#[actix_web::test]
async fn rs256_refuses_hs256_signed_with_the_public_key() {
    let dir = TempPath::new("keys");
    write_keys(&dir, &rcgen::PKCS_RSA_SHA256, &["rsa-1"]);
    let keys_dir = dir.0.clone();
    let app = spawn_app_with(|s| {
        s.jwt_algorithm = JwtAlgorithm::RS256;
        s.jwt_keys_dir = Some(keys_dir);
    })
    .await;
    let token = admin_token(&app).await;
    assert_eq!(header_of(&token), json!({"alg": "RS256", "kid": "rsa-1"}));
    assert_eq!(status(&app, &token).await, 200);
    let jwks = json(
        app.request(Method::GET, "/.well-known/jwks.json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let public = &jwks["keys"][0];
    assert_eq!(public["kty"], "RSA");
    // The attacker knows the public key: HMAC with it, under the RSA key's kid and without.
    for material in [public["n"].as_str().unwrap().to_owned(), public.to_string()] {
        for kid in [Some("rsa-1".to_owned()), None] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = kid;
            let forged = encode(
                &header,
                &claims(),
                &EncodingKey::from_secret(material.as_bytes()),
            )
            .unwrap();
            let response = app
                .request(Method::GET, "/api/sessions")
                .bearer_auth(forged)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401);
            assert_eq!(json(response).await["code"], "invalid_token");
        }
    }
}

#[actix_web::test]
async fn a_missing_or_empty_key_directory_stops_the_start() {
    let dir = TempPath::new("no-keys");
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut settings = test_settings();
    settings.api_gateway_secret = Some(kailash_gateway::config::Secret::new(random_secret()));
    settings.jwt_algorithm = JwtAlgorithm::RS256;
    let error = settings.validate().unwrap_err().to_string();
    assert!(error.contains("jwt_keys_dir"), "{error}");
    settings.jwt_keys_dir = Some(dir.0.clone());
    let secret = settings.api_gateway_secret.clone();
    let error = kailash_gateway::Application::build(settings, secret.as_ref())
        .await
        .err()
        .expect("no keys: no start")
        .to_string();
    assert!(error.contains("holds no <kid>.pem key"), "{error}");
}
