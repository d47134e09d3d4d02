//! The HTTP server: axum routes over the report store, the authentication gate, security
//! headers, and the one POST ("re-run check") with its CSRF token.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` and `GET /api/` | overview (HTML, JSON) |
//! | `GET /domain/{d}` and `GET /api/domain/{d}` | domain page (`-` is the empty domain) |
//! | `POST /domain/{d}/check` | re-run the diagnosis (CSRF token), then 303 to the page |
//! | `GET /report/{id}` and `GET /api/report/{id}` | one report by row id |
//! | `GET /export/overview.csv`, `GET /export/days.csv` | CSV of the overview, of the days |
//!
//! Every route takes the query of [`ViewQuery`]. Nothing writes to the store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use mta_sts_net::Clock;
use mta_sts_report_store::{DetailFilter, PeriodFilter, ReportStore, StoreError, SummaryFilter};
use serde::{Deserialize, Serialize};

use crate::auth::{Auth, AuthError};
use crate::diagnose::{Diagnose, Diagnosis};
use crate::pages;
use crate::query::ViewQuery;
use crate::served::{ServedDomains, ServedJson, ServedSource};
use crate::view::{self, Filters};

/// Sent with every answer: no scripts at all, no external resources, no framing.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Listen address; loopback unless [`WebConfig::auth`] is set.
    pub listen: SocketAddr,
    /// Who may read.
    pub auth: Auth,
    /// Path prefix the pages are mounted under (`""` at the root, e.g. `/dashboard`).
    pub base: String,
    /// Most reports listed on a domain page.
    pub report_limit: u32,
    /// The domains of a serve configuration (`--serve-config`): their pages show the
    /// records to publish. Empty: none.
    pub served: Arc<dyn ServedSource>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
            auth: Auth::None,
            base: String::new(),
            report_limit: 200,
            served: Arc::new(ServedDomains::default()),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The authentication settings refuse the listen address.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No random source for the CSRF token.
    #[error("no random source for the CSRF token")]
    Random,
}

/// What every handler shares.
struct AppState {
    store: Arc<dyn ReportStore>,
    clock: Arc<dyn Clock>,
    auth: Auth,
    base: String,
    report_limit: u32,
    csrf: String,
    diagnose: Option<Arc<dyn Diagnose>>,
    diagnoses: Mutex<HashMap<String, Diagnosis>>,
    served: Arc<dyn ServedSource>,
}

type Shared = Arc<AppState>;

impl AppState {
    fn now(&self) -> i64 {
        i64::try_from(self.clock.now()).unwrap_or(i64::MAX)
    }
}

fn csrf_token() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| WebError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The routes, for mounting in another axum server (`mta-sts serve`) or serving alone
/// ([`WebServer::start`]). `config.base` must be where it is nested.
pub fn router(
    config: &WebConfig,
    store: Arc<dyn ReportStore>,
    clock: Arc<dyn Clock>,
    diagnose: Option<Arc<dyn Diagnose>>,
) -> Result<Router, WebError> {
    let state = Arc::new(AppState {
        store,
        clock,
        auth: config.auth.clone(),
        base: config.base.trim_end_matches('/').to_owned(),
        report_limit: config.report_limit,
        csrf: csrf_token()?,
        diagnose,
        diagnoses: Mutex::new(HashMap::new()),
        served: config.served.clone(),
    });
    Ok(Router::new()
        .route("/", get(overview_page))
        .route("/api/", get(overview_json))
        .route("/domain/{name}", get(domain_page))
        .route("/api/domain/{name}", get(domain_json))
        .route("/domain/{name}/check", post(check))
        .route("/report/{id}", get(report_page))
        .route("/api/report/{id}", get(report_json))
        .route("/export/overview.csv", get(overview_csv))
        .route("/export/days.csv", get(days_csv))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state))
}

/// Authentication, then security headers on every answer.
async fn gate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // DNS rebinding: without a token, only requests naming loopback are answered.
    let host_ok = !matches!(state.auth, Auth::None)
        || request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .is_some_and(crate::auth::is_loopback_host);
    let mut response = if !host_ok {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "without --token-file the dashboard answers only requests for localhost, 127.0.0.1 or [::1]\n",
        )
            .into_response()
    } else if state.auth.allows(authorization) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"mta-sts dashboard\", charset=\"UTF-8\"",
            )],
            "authentication required: send the token as a Bearer token or as the Basic password\n",
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A store failure as a 500 page; the cause goes to the log, not to the page.
fn store_failed(state: &AppState, query: &ViewQuery, error: &StoreError) -> Response {
    tracing::warn!(error = %mta_sts_net::causes::with_causes(error), "dashboard: report store failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(pages::error(
            &state.base,
            query,
            state.now(),
            "The report store failed",
            &format!("{error}; the server log has the cause."),
        )),
    )
        .into_response()
}

async fn not_found(State(state): State<Shared>) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(pages::error(
            &state.base,
            &ViewQuery::default(),
            state.now(),
            "Not found",
            "No page here; start from the overview.",
        )),
    )
        .into_response()
}

async fn load_overview(state: &AppState, query: &ViewQuery) -> Result<view::Overview, StoreError> {
    let filters = Filters::new(query, state.now());
    let period = PeriodFilter {
        since: filters.since.clone(),
        until: None,
    };
    let totals = state.store.domain_totals(&period).await?;
    let keys = state
        .store
        .overview_keys(&period, filters.org.as_deref())
        .await?;
    Ok(view::overview(filters, &totals, &keys))
}

/// The overview with the sparkline points of the rows its page shows (their days, read in
/// one store call), so a page costs the same however many domains there are.
async fn load_overview_page(
    state: &AppState,
    query: &ViewQuery,
) -> Result<view::Overview, StoreError> {
    let mut overview = load_overview(state, query).await?;
    let rows = overview.page_rows(query.page());
    let domains: Vec<String> = overview.domains[rows.clone()]
        .iter()
        .map(|r| r.policy_domain.clone())
        .collect();
    let days = state
        .store
        .domain_days(&domains, overview.filters.since.as_deref())
        .await?;
    overview.attach_points(rows, &days);
    Ok(overview)
}

async fn overview_page(State(state): State<Shared>, Query(query): Query<ViewQuery>) -> Response {
    match load_overview_page(&state, &query).await {
        Ok(v) => Html(pages::overview(&state.base, &query, state.now(), &v)).into_response(),
        Err(e) => store_failed(&state, &query, &e),
    }
}

async fn overview_json(State(state): State<Shared>, Query(query): Query<ViewQuery>) -> Response {
    match load_overview(&state, &query).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_failed(&state, &query, &e),
    }
}

/// The domain of a path segment (`-` is the empty domain).
fn domain_of(segment: &str) -> String {
    if segment == "-" {
        String::new()
    } else {
        mta_sts_report_store::normalize_domain(segment)
    }
}

async fn load_domain(
    state: &AppState,
    query: &ViewQuery,
    domain: &str,
) -> Result<(view::DomainPage, Vec<String>), StoreError> {
    let filters = Filters::new(query, state.now());
    let days = state
        .store
        .summary(&SummaryFilter {
            domain: Some(domain.to_owned()),
            since: filters.since.clone(),
            ..SummaryFilter::default()
        })
        .await?;
    let details = state
        .store
        .details(
            &DetailFilter {
                domain: Some(domain.to_owned()),
                period: PeriodFilter {
                    since: filters.since.clone(),
                    until: None,
                },
            },
            state.report_limit,
        )
        .await?;
    let organizations = details
        .organizations
        .iter()
        .map(|o| o.organization_name.clone())
        .collect();
    Ok((
        view::domain_page(filters, domain, days, details),
        organizations,
    ))
}

async fn domain_page(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<ViewQuery>,
) -> Response {
    let domain = domain_of(&name);
    match load_domain(&state, &query, &domain).await {
        Ok((v, organizations)) => {
            let served = state.served.records(&domain);
            let served_config = state.served.config();
            let diagnosis = state
                .diagnoses
                .lock()
                .ok()
                .and_then(|m| m.get(&domain).cloned());
            Html(pages::domain(
                &state.base,
                &query,
                state.now(),
                &v,
                pages::DomainExtras {
                    report_limit: state.report_limit,
                    diagnosis: diagnosis.as_ref(),
                    can_check: state.diagnose.is_some() && !domain.is_empty(),
                    csrf: &state.csrf,
                    organizations,
                    served: served.as_ref(),
                    served_config: served_config.as_deref(),
                },
            ))
            .into_response()
        }
        Err(e) => store_failed(&state, &query, &e),
    }
}

/// The domain page's JSON: its view, the cached diagnosis (with drift findings for a
/// configured domain) and, with a serve configuration, the records to publish.
#[derive(Serialize)]
struct DomainJson {
    #[serde(flatten)]
    page: view::DomainPage,
    diagnosis: Option<Diagnosis>,
    served: Option<ServedJson>,
}

async fn domain_json(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<ViewQuery>,
) -> Response {
    let domain = domain_of(&name);
    match load_domain(&state, &query, &domain).await {
        Ok((page, _)) => {
            let diagnosis = state
                .diagnoses
                .lock()
                .ok()
                .and_then(|m| m.get(&domain).cloned());
            Json(DomainJson {
                page,
                diagnosis,
                served: state.served.records(&domain).map(|records| ServedJson {
                    config: state.served.config().unwrap_or_default(),
                    records,
                }),
            })
            .into_response()
        }
        Err(e) => store_failed(&state, &query, &e),
    }
}

/// The form of "re-run check".
#[derive(Deserialize)]
struct CheckForm {
    csrf: String,
}

/// `POST /domain/{d}/check`: the one action. It needs the page's CSRF token (a page from
/// another site cannot read it) and is refused when the browser says the request comes
/// from another site (`Sec-Fetch-Site: cross-site`).
async fn check(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<ViewQuery>,
    headers: HeaderMap,
    Form(form): Form<CheckForm>,
) -> Response {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let token_ok = ring::digest::digest(&ring::digest::SHA256, form.csrf.as_bytes()).as_ref()
        == ring::digest::digest(&ring::digest::SHA256, state.csrf.as_bytes()).as_ref();
    if cross_site || !token_ok {
        return (
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the domain page and try again\n",
        )
            .into_response();
    }
    let domain = domain_of(&name);
    let Some(diagnose) = state.diagnose.clone().filter(|_| !domain.is_empty()) else {
        return (
            StatusCode::NOT_FOUND,
            "checks are not enabled on this server\n",
        )
            .into_response();
    };
    let diagnosis = diagnose.diagnose(&domain).await;
    if let Ok(mut m) = state.diagnoses.lock() {
        m.insert(domain, diagnosis);
    }
    Redirect::to(&format!(
        "{}/domain/{}?{}",
        state.base,
        pages::domain_segment(&domain_of(&name)),
        query.with_period(query.period())
    ))
    .into_response()
}

async fn find_report(
    state: &AppState,
    id: &str,
) -> Result<Option<mta_sts_report_store::StoredReport>, StoreError> {
    let Ok(row) = id.parse::<i64>() else {
        return Ok(None);
    };
    Ok(state
        .store
        .find(&row.to_string())
        .await?
        .into_iter()
        .find(|r| r.id == row))
}

async fn report_page(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<ViewQuery>,
) -> Response {
    match find_report(&state, &id).await {
        Ok(Some(r)) => Html(pages::report(&state.base, &query, state.now(), &r)).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Html(pages::error(
                &state.base,
                &query,
                state.now(),
                "No such report",
                "No stored report has this row id; follow a link from a domain page.",
            )),
        )
            .into_response(),
        Err(e) => store_failed(&state, &query, &e),
    }
}

/// A report's JSON: the stored report, and the JSON as received.
#[derive(Serialize)]
struct ReportJson<'a> {
    #[serde(flatten)]
    stored: &'a mta_sts_report_store::StoredReport,
    raw_json: &'a str,
}

async fn report_json(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<ViewQuery>,
) -> Response {
    match find_report(&state, &id).await {
        Ok(Some(r)) => Json(ReportJson {
            stored: &r,
            raw_json: &r.raw_json,
        })
        .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no such report"})),
        )
            .into_response(),
        Err(e) => store_failed(&state, &query, &e),
    }
}

/// A CSV cell that a spreadsheet will not take for a formula (report fields come from
/// strangers): a leading `=`, `+`, `-`, `@`, tab or CR gets a `'` in front.
fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

fn csv_response(name: &str, rows: Vec<Vec<String>>) -> Response {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        if writer.write_record(row.iter().map(|c| cell(c))).is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    match writer.into_inner() {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn joined(map: &std::collections::BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn overview_csv(State(state): State<Shared>, Query(query): Query<ViewQuery>) -> Response {
    let v = match load_overview(&state, &query).await {
        Ok(v) => v,
        Err(e) => return store_failed(&state, &query, &e),
    };
    let mut rows = vec![
        [
            "policy_domain",
            "status",
            "days",
            "reports",
            "successful",
            "failed",
            "success_rate",
            "last_day",
            "organizations",
            "policy_types",
            "failures_by_result_type",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in &v.domains {
        rows.push(vec![
            r.policy_domain.clone(),
            r.status.label().to_owned(),
            r.days.to_string(),
            r.reports.to_string(),
            r.successful.to_string(),
            r.failed.to_string(),
            r.success_rate
                .map(|x| format!("{x:.6}"))
                .unwrap_or_default(),
            r.last_day.clone().unwrap_or_default(),
            r.organizations.join("; "),
            r.policy_types.join("; "),
            joined(&r.failures_by_result_type),
        ]);
    }
    csv_response("overview.csv", rows)
}

async fn days_csv(State(state): State<Shared>, Query(query): Query<ViewQuery>) -> Response {
    let filters = Filters::new(&query, state.now());
    let days = match state
        .store
        .summary(&SummaryFilter {
            domain: filters.domain.clone(),
            since: filters.since.clone(),
            ..SummaryFilter::default()
        })
        .await
    {
        Ok(d) => d,
        Err(e) => return store_failed(&state, &query, &e),
    };
    let mut rows = vec![
        [
            "policy_domain",
            "day",
            "reports",
            "successful",
            "failed",
            "failures_by_result_type",
            "failures_by_organization",
            "failures_by_mx",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for d in &days {
        rows.push(vec![
            d.policy_domain.clone(),
            d.day.clone(),
            d.reports.to_string(),
            d.successful.to_string(),
            d.failed.to_string(),
            joined(&d.failures_by_result_type),
            joined(&d.failures_by_organization),
            joined(&d.failures_by_mx),
        ]);
    }
    csv_response("days.csv", rows)
}

/// A running dashboard server.
#[derive(Debug)]
pub struct WebServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebServer {
    /// Checks the listen address against the authentication (a non-loopback address
    /// without a token is refused), binds and serves in a task.
    pub async fn start(
        config: &WebConfig,
        store: Arc<dyn ReportStore>,
        clock: Arc<dyn Clock>,
        diagnose: Option<Arc<dyn Diagnose>>,
    ) -> Result<WebServer, WebError> {
        config.auth.check_listen(config.listen)?;
        let app = router(config, store, clock, diagnose)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| WebError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| WebError::Bind {
            addr: config.listen,
            source,
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "dashboard server stopped");
            }
        });
        Ok(WebServer {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for open requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until the task ends (it does not end on its own).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}
