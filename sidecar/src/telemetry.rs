//! Metrics through the OpenTelemetry SDK, exported in Prometheus text format on
//! `/metrics` and, with `[telemetry] otlp_endpoint`, pushed over OTLP HTTP/protobuf
//! together with a trace per binlog transaction. Libraries keep plain counters; this
//! module observes them, so neither the engine nor the connectors depend on
//! OpenTelemetry.

use anyhow::{Context, Result};
use connectors::config::ConfigError;
use connectors::duration::HumanDuration;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prometheus::{Encoder, TextEncoder};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The `[telemetry]` section.
///
/// ```toml
/// [telemetry]
/// otlp_endpoint = "http://127.0.0.1:4318"   # POSTs to /v1/metrics and /v1/traces
/// export_interval = "10s"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP HTTP receiver; absent = no push export.
    pub otlp_endpoint: Option<String>,
    /// Period of the metrics push.
    pub export_interval: HumanDuration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            export_interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

impl TelemetryConfig {
    /// Checks values serde cannot: the key at fault and why.
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        if let Some(e) = &self.otlp_endpoint {
            if !e.starts_with("http://") {
                return Err(ConfigError::new(
                    "telemetry",
                    "otlp_endpoint",
                    format!("{e:?}: expected an http:// URL (TLS is not built in)"),
                ));
            }
        }
        if self.export_interval.is_zero() {
            return Err(ConfigError::new(
                "telemetry",
                "export_interval",
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

/// The process's meter provider and the registry `/metrics` renders.
pub struct Telemetry {
    registry: prometheus::Registry,
    // Kept alive: dropping the provider stops the instruments' callbacks.
    provider: SdkMeterProvider,
    tracer: Option<SdkTracerProvider>,
    meter: Meter,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

/// The OTLP exporters' HTTP client: hyper, run on the sidecar's tokio runtime (the
/// SDK exports from its own threads, which have no reactor), logging failures so an
/// unreachable collector shows up as a warning and nothing else.
#[derive(Debug)]
struct OnRuntime {
    client: Arc<opentelemetry_http::hyper::HyperClient>,
    handle: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().to_string();
        let client = self.client.clone();
        let res = match self
            .handle
            .spawn(async move { client.send_bytes(request).await })
            .await
        {
            Ok(r) => r,
            Err(e) => Err(Box::new(e) as HttpError),
        };
        match &res {
            Ok(r) if !r.status().is_success() => {
                tracing::warn!(%uri, status = %r.status(), "OTLP export refused")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%uri, error = %e, "OTLP export failed"),
        }
        res
    }
}

fn http_client(timeout: Duration, handle: &tokio::runtime::Handle) -> OnRuntime {
    OnRuntime {
        client: Arc::new(
            opentelemetry_http::hyper::HyperClient::with_default_connector(timeout, None),
        ),
        handle: handle.clone(),
    }
}

impl Telemetry {
    /// Builds the provider with a Prometheus reader, plus OTLP exporters when
    /// `config.otlp_endpoint` is set (and a tokio runtime is running). Both providers
    /// become the global ones, which the pipeline's instruments and spans use.
    pub fn new(config: &TelemetryConfig) -> Result<Telemetry> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .without_target_info()
            .build()
            .context("cannot build the Prometheus exporter")?;
        let resource = Resource::builder().with_service_name("coherent").build();
        let mut builder = SdkMeterProvider::builder()
            .with_reader(exporter)
            .with_resource(resource.clone());
        let mut tracer = None;
        if let Some(endpoint) = &config.otlp_endpoint {
            match Self::otlp(endpoint, config.export_interval.0, resource) {
                Ok((reader, traces)) => {
                    builder = builder.with_reader(reader);
                    opentelemetry::global::set_tracer_provider(traces.clone());
                    tracer = Some(traces);
                    tracing::info!(%endpoint, interval = %config.export_interval, "OTLP export on");
                }
                // Telemetry is not worth refusing to serve for.
                Err(e) => tracing::warn!(%endpoint, error = %format!("{e:#}"), "OTLP export off"),
            }
        }
        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        let meter = provider.meter("coherent");
        Ok(Telemetry {
            registry,
            provider,
            tracer,
            meter,
        })
    }

    fn otlp(
        endpoint: &str,
        interval: Duration,
        resource: Resource,
    ) -> Result<(
        PeriodicReader<opentelemetry_otlp::MetricExporter>,
        SdkTracerProvider,
    )> {
        let handle =
            tokio::runtime::Handle::try_current().context("OTLP export needs the tokio runtime")?;
        let base = endpoint.trim_end_matches('/');
        let timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(10));
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/metrics"))
            .with_timeout(timeout)
            .with_http_client(http_client(timeout, &handle))
            .build()
            .context("cannot build the OTLP metric exporter")?;
        let reader = PeriodicReader::builder(metrics)
            .with_interval(interval)
            .build();
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/traces"))
            .with_timeout(timeout)
            .with_http_client(http_client(timeout, &handle))
            .build()
            .context("cannot build the OTLP span exporter")?;
        let traces = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource)
            .build();
        Ok((reader, traces))
    }

    /// The provider's meter (the pipeline uses the global one, the same provider).
    #[cfg(test)]
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Flushes and stops the exporters (a last OTLP push). Blocks: call it off the
    /// runtime's workers (`spawn_blocking`), which must still be running.
    pub fn shutdown(&self) {
        if let Some(t) = &self.tracer {
            if let Err(e) = t.shutdown() {
                tracing::warn!(error = %e, "cannot flush traces");
            }
        }
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "cannot flush metrics");
        }
    }

    /// Observes the engine: keys, clients and commands processed, and TTL backstops
    /// applied (by the engine, plus the keys the external-Redis sweeper fixed).
    pub fn observe_engine(&self, engine: engine::Engine, swept: crate::sweep::SweptKeys) {
        let e = engine.clone();
        self.meter
            .u64_observable_gauge("coherent_engine_keys")
            .with_description("Keys in the embedded engine, all databases")
            .with_callback(move |o| o.observe(e.stats().keys, &[]))
            .build();
        let e = engine.clone();
        self.meter
            .u64_observable_gauge("coherent_engine_connected_clients")
            .with_description("Clients connected to the embedded engine")
            .with_callback(move |o| o.observe(e.stats().connected_clients, &[]))
            .build();
        let e = engine.clone();
        self.meter
            .u64_observable_counter("coherent_backstop_ttls_applied")
            .with_description("Keys given a TTL backstop: writes capped by the engine plus keys fixed by the external-Redis sweeper")
            .with_callback(move |o| {
                o.observe(e.ttl_backstops_applied() + swept.get(), &[])
            })
            .build();
        let e = engine;
        self.meter
            .u64_observable_counter("coherent_engine_commands")
            .with_description("Commands processed by the embedded engine")
            .with_callback(move |o| o.observe(e.stats().commands_processed, &[]))
            .build();
    }

    /// Prometheus text exposition of every instrument.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Telemetry {
    /// Observes the binlog pipeline's state.
    pub fn observe_pipeline(&self, state: std::sync::Arc<crate::pipeline::PipelineState>) {
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_binlog_purged_backfills")
            .with_description("Backfills of every rule table because the checkpoint's binlog was purged ([mysql] on_purged = \"invalidate\")")
            .with_callback(move |o| {
                o.observe(
                    s.purged_backfills
                        .load(std::sync::atomic::Ordering::Relaxed),
                    &[],
                )
            })
            .build();
        let s = state.clone();
        self.meter
            .f64_observable_gauge("coherent_binlog_lag_seconds")
            .with_description("Seconds from a transaction's commit to its deletes landing (the oldest waiting transaction's age while some wait)")
            .with_callback(move |o| o.observe(s.snapshot().lag_seconds, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_gauge("coherent_ha_leader")
            .with_description("[ha] enabled: 1 while this process is the leader, 0 as a standby")
            .with_callback(move |o| {
                if let Some(h) = s.snapshot().ha {
                    o.observe(u64::from(h.is_leader()), &[]);
                }
            })
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_gauge("coherent_binlog_paused")
            .with_description("1 while the binlog pipeline is paused because the embedded engine is a replica (its primary's sidecar invalidates)")
            .with_callback(move |o| o.observe(u64::from(s.snapshot().paused.is_some()), &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_gauge("coherent_binlog_connected")
            .with_description("1 while a binlog stream is open")
            .with_callback(move |o| o.observe(u64::from(s.snapshot().connected), &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_binlog_events")
            .with_description("Binlog events received")
            .with_callback(move |o| o.observe(s.snapshot().events, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_binlog_transactions")
            .with_description("Transactions whose deletes were applied")
            .with_callback(move |o| o.observe(s.snapshot().stats.transactions, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_binlog_rows")
            .with_description("Row changes processed")
            .with_callback(move |o| o.observe(s.snapshot().stats.rows, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_invalidations")
            .with_description("Cache keys deleted (distinct per transaction)")
            .with_callback(move |o| o.observe(s.snapshot().stats.invalidations, &[]))
            .build();
        let s = state.clone();
        self.meter
            .f64_observable_gauge("coherent_checkpoint_timestamp_seconds")
            .with_description("Unix time the checkpoint was last written (0: none yet)")
            .with_callback(move |o| o.observe(s.snapshot().checkpoint_saved_at, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_reconnects")
            .with_description("Reconnects to MySQL after a failure")
            .with_callback(move |o| o.observe(s.snapshot().reconnects, &[]))
            .build();
        self.observe_delivery(state);
    }

    /// Delivery: the retry queue, dead letters, second deletes, backpressure.
    fn observe_delivery(&self, state: std::sync::Arc<crate::pipeline::PipelineState>) {
        let s = state.clone();
        self.meter
            .u64_observable_gauge("coherent_retry_queue_depth")
            .with_description("Deletes waiting in the retry queue")
            .with_callback(move |o| o.observe(s.snapshot().retry.depth, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_retries")
            .with_description("Failed retry attempts of queued deletes")
            .with_callback(move |o| o.observe(s.snapshot().retry.retries, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_retry_queued")
            .with_description("Deletes ever handed to the retry queue")
            .with_callback(move |o| o.observe(s.snapshot().retry.enqueued, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_dead_letters")
            .with_description("Deletes parked in the dead-letter store after max_attempts")
            .with_callback(move |o| o.observe(s.snapshot().retry.dead_letters, &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_double_deletes")
            .with_description("Second (delayed) deletes sent")
            .with_callback(move |o| o.observe(s.snapshot().stats.double_deletes, &[]))
            .build();
        let s = state;
        self.meter
            .u64_observable_counter("coherent_backpressure_pauses")
            .with_description("Times binlog reading paused because the retry queue was full")
            .with_callback(move |o| o.observe(s.snapshot().stats.backpressure_pauses, &[]))
            .build();
    }

    /// The online audit checker: checks, inconsistencies and late deletes per delay
    /// window, the consistency as a ratio and as nines, check errors, dropped samples, and the
    /// invalidation lag of sampled keys (a histogram recorded as they are sampled).
    pub fn observe_audit(&self, state: std::sync::Arc<crate::audit::online::AuditState>) {
        use crate::audit::online::{window_label, LAG_BOUNDS};
        use opentelemetry::KeyValue;
        let labels: Vec<KeyValue> = state
            .delays_ms()
            .iter()
            .map(|d| KeyValue::new("window", window_label(*d)))
            .collect();
        let (s, l) = (state.clone(), labels.clone());
        self.meter
            .u64_observable_counter("coherent_audit_checks")
            .with_description(
                "Online audit checks of sampled invalidated keys, per delay after the commit",
            )
            .with_callback(move |o| {
                for (i, kv) in l.iter().enumerate() {
                    o.observe(s.window(i).0, std::slice::from_ref(kv));
                }
            })
            .build();
        let (s, l) = (state.clone(), labels.clone());
        self.meter
            .u64_observable_counter("coherent_audit_inconsistencies")
            .with_description("Online audit checks that found a confirmed inconsistent cache entry")
            .with_callback(move |o| {
                for (i, kv) in l.iter().enumerate() {
                    o.observe(s.window(i).1, std::slice::from_ref(kv));
                }
            })
            .build();
        let (s, l) = (state.clone(), labels.clone());
        self.meter
            .u64_observable_counter("coherent_audit_late")
            .with_description("Sampled keys whose delete was applied after the window's delay after the commit (not checks)")
            .with_callback(move |o| {
                for (i, kv) in l.iter().enumerate() {
                    o.observe(s.late(i), std::slice::from_ref(kv));
                }
            })
            .build();
        let (s, l) = (state.clone(), labels.clone());
        self.meter
            .f64_observable_gauge("coherent_audit_consistency_ratio")
            .with_description("Consistent checks / checks, per delay window (1 before any check)")
            .with_callback(move |o| {
                for (i, kv) in l.iter().enumerate() {
                    o.observe(s.consistency(i), std::slice::from_ref(kv));
                }
            })
            .build();
        let (s, l) = (state.clone(), labels);
        self.meter
            .f64_observable_gauge("coherent_audit_consistency_nines")
            .with_description("-log10(1 - consistency ratio) per delay window, capped at 12")
            .with_callback(move |o| {
                for (i, kv) in l.iter().enumerate() {
                    o.observe(
                        crate::audit::report::nines(s.consistency(i)),
                        std::slice::from_ref(kv),
                    );
                }
            })
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_audit_check_errors")
            .with_description("Online audit checks that could not read the cache or the database")
            .with_callback(move |o| o.observe(s.errors(), &[]))
            .build();
        let s = state.clone();
        self.meter
            .u64_observable_counter("coherent_audit_samples_dropped")
            .with_description("Samples dropped at max_pending, plus transactions (each counted as one) the checker's channel had no room for")
            .with_callback(move |o| o.observe(s.dropped(), &[]))
            .build();
        let h = self
            .meter
            .f64_histogram("coherent_audit_invalidation_lag_seconds")
            .with_description("Seconds from a commit to its deletes applied, per sampled key")
            .with_boundaries(LAG_BOUNDS.to_vec())
            .build();
        state.set_lag_metric(h);
    }
}
