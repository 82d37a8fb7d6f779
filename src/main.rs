//! The `kailash-gateway` binary: parses the command line, loads settings, and runs one of
//! `serve` (the default), `token` (mint a bearer token), `migrate` (apply the database
//! migrations and exit), `settings` (print the settings table) or `nodes` (print the node
//! reference).

use std::{collections::HashMap, io::Write, path::PathBuf, process::ExitCode};

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use kailash_gateway::{
    Application,
    auth::{
        secret::{self, SigningSecret},
        token::{MintRequest, TokenKeys, TokenType},
    },
    config::{self, AuthMode, Settings},
    logging, nodes, shutdown,
};

/// glibc's allocator serializes the actors' thread against the HTTP workers and the store's
/// runtime on its arena locks (the actors' thread was seen waiting on them ~4 % of the
/// time under load); mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cli() -> Command {
    let command = Command::new("kailash-gateway")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Actor-based, multi-tenant Kailash middleware gateway")
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .help("Settings file (.toml, .yaml or .yml)")
                .global(true),
        )
        .subcommand(Command::new("serve").about("Run the gateway (the default)"))
        .subcommand(
            Command::new("token")
                .about("Print a bearer token signed with this gateway's secret")
                .arg(
                    Arg::new("sub")
                        .long("sub")
                        .default_value("admin")
                        .help("Principal (user id)"),
                )
                .arg(Arg::new("tenant").long("tenant").help("tenant_id claim"))
                .arg(
                    Arg::new("role")
                        .long("role")
                        .action(ArgAction::Append)
                        .help("Role (repeatable)"),
                )
                .arg(
                    Arg::new("ttl-minutes")
                        .long("ttl-minutes")
                        .value_parser(value_parser!(i64).range(1..=527_040))
                        .default_value("60"),
                ),
        )
        .subcommand(
            Command::new("migrate").about("Apply the database migrations (DATABASE_URL) and exit"),
        )
        .subcommand(Command::new("settings").about("Print every setting as a Markdown table"))
        .subcommand(
            Command::new("nodes").about("Print the node reference (docs/nodes.md) as Markdown"),
        );
    config::add_setting_flags(command)
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    match matches.subcommand_name() {
        Some("settings") => {
            print!("{}", config::settings_table());
            return ExitCode::SUCCESS;
        }
        Some("nodes") => {
            let registry = nodes::native_registry(&nodes::NodeEnvironment::default());
            print!("{}", nodes::reference_markdown(&registry));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let dotenv: HashMap<String, String> = match dotenvy::from_filename_iter(".env") {
        Ok(pairs) => match pairs.collect() {
            Ok(pairs) => pairs,
            Err(error) => return fail(format!("cannot read .env: {error}")),
        },
        Err(_) => HashMap::new(),
    };
    let settings = match config::load(
        matches.get_one::<PathBuf>("config").map(PathBuf::as_path),
        |name| std::env::var(name).ok(),
        &dotenv,
        &matches,
    ) {
        Ok(settings) => settings,
        Err(error) => return fail(format!("configuration error: {error}")),
    };
    match matches.subcommand() {
        Some(("token", args)) => token(&settings, args),
        Some(("migrate", _)) => migrate(&settings),
        _ => serve(settings),
    }
}

fn fail(line: String) -> ExitCode {
    eprintln!("kailash-gateway: {line}");
    ExitCode::from(2)
}

fn keys_for(settings: &Settings) -> Result<SigningSecret, ExitCode> {
    secret::resolve(settings).map_err(|error| fail(format!("configuration error: {error}")))
}

fn token(settings: &Settings, args: &ArgMatches) -> ExitCode {
    let signing = match keys_for(settings) {
        Ok(signing) => signing,
        Err(code) => return code,
    };
    let request = MintRequest {
        subject: args.get_one::<String>("sub").cloned().unwrap_or_default(),
        tenant_id: args.get_one::<String>("tenant").cloned(),
        roles: args
            .get_many::<String>("role")
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        permissions: Vec::new(),
        lifetime: chrono::Duration::minutes(*args.get_one::<i64>("ttl-minutes").unwrap_or(&60)),
        token_type: TokenType::Access,
    };
    println!(
        "{}",
        TokenKeys::hs256(signing.secret().expose().as_bytes()).mint(&request)
    );
    ExitCode::SUCCESS
}

fn migrate(settings: &Settings) -> ExitCode {
    let Some(url) = &settings.database_url else {
        return fail("migrate needs DATABASE_URL (or --database-url)".into());
    };
    let migrated = kailash_gateway::app::connect(url.expose(), settings)
        .map_err(|error| error.to_string())
        .and_then(|store| {
            // The store does its I/O on its own runtime; this one only waits for it.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime
                .block_on(store.migrate())
                .map_err(|error| error.to_string())
        });
    match migrated {
        Ok(applied) => {
            println!("applied {applied} migration(s); the schema is up to date");
            ExitCode::SUCCESS
        }
        Err(error) => fail(format!("migration failed: {error}")),
    }
}

fn serve(settings: Settings) -> ExitCode {
    logging::init(&settings);
    let signing = match settings.auth_mode {
        AuthMode::Open => None,
        AuthMode::Gated => match keys_for(&settings) {
            Ok(signing) => Some(signing),
            Err(code) => return code,
        },
    };
    if let Some(SigningSecret::Generated { secret, path }) = &signing {
        announce_admin_token(secret.expose(), path, &settings);
    }
    let result = actix_rt::System::new().block_on(async move {
        let app = Application::build(settings, signing.as_ref().map(SigningSecret::secret))
            .await
            .map_err(|error| error.to_string())?;
        if let Some(password) = app.open_accounts().await.map_err(|e| e.to_string())? {
            // Shown once: it is stored only as a hash.
            let _ = writeln!(
                std::io::stdout(),
                "\nCreated the user `admin` (role admin). Its password, shown only now: {password}\n\
                 Log in with POST /api/auth/login {{\"username\":\"admin\",\"password\":...}}\n"
            );
        }
        let (state, server) = (app.state(), app.server_handle());
        let drain_state = state.clone();
        let drain = actix_rt::spawn(async move {
            let reason = shutdown::signal().await;
            shutdown::drain(&drain_state, &server, reason).await;
        });
        let served = app.run_until_stopped().await;
        // The drain stops the server midway; the process must not exit before the rest of
        // it (the store flush, leaving the cluster) is done.
        if state.lifecycle.is_draining() {
            let _ = drain.await;
        }
        served.map_err(|error| error.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => fail(line),
    }
}

/// Printed once, when the embedded default generates its secret: a token to try the API.
fn announce_admin_token(secret: &str, path: &std::path::Path, settings: &Settings) {
    let token = TokenKeys::hs256(secret.as_bytes()).mint(&MintRequest {
        subject: "admin".into(),
        tenant_id: None,
        roles: vec!["admin".into()],
        permissions: Vec::new(),
        lifetime: chrono::Duration::hours(24),
        token_type: TokenType::Access,
    });
    // Written once, best effort: a closed stdout must not stop the gateway.
    let _ = writeln!(
        std::io::stdout(),
        "\nGenerated a signing secret in {} (mode 0600).\n\
         Admin bearer token (valid 24 h; mint more with `kailash-gateway token --sub NAME`):\n\n  \
         {token}\n\n  curl -H 'Authorization: Bearer {token}' http://{}/api/sessions\n",
        path.display(),
        settings.bind
    );
}
