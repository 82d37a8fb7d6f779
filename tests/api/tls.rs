//! Optional HTTPS from PEM files.

use kailash_gateway::{Application, config::Secret};

use crate::helpers::*;

fn write_temp(name: &str, contents: &str) -> TempPath {
    let path = TempPath::new(name);
    std::fs::write(&path.0, contents).unwrap();
    path
}

#[actix_web::test]
async fn tls_serves_https_with_the_configured_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert = write_temp("cert.pem", &cert_pem);
    let key = write_temp("key.pem", &certified.signing_key.serialize_pem());
    let app = spawn_app_with(|s| {
        s.tls_cert_file = Some(cert.0.clone());
        s.tls_key_file = Some(key.0.clone());
    })
    .await;
    let port = app.address.rsplit(':').next().unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        app.client
            .get(format!("{}/health", app.address))
            .send()
            .await
            .is_err(),
        "plain HTTP is not served"
    );
}

#[actix_web::test]
async fn unreadable_tls_files_stop_the_build_naming_the_setting() {
    let mut settings = test_settings();
    settings.tls_cert_file = Some("/nonexistent/cert.pem".into());
    settings.tls_key_file = Some("/nonexistent/key.pem".into());
    let error = Application::build(settings, Some(&Secret::new(random_secret())))
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().starts_with("setting `tls_cert_file`"),
        "{error}"
    );
}
