//! Metrics through the OpenTelemetry SDK, exported in Prometheus text format on
//! `/metrics`. Libraries keep plain counters; this module observes them, so neither the
//! engine nor the connectors depend on OpenTelemetry.

use anyhow::{Context, Result};
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

/// The process's meter provider and the registry `/metrics` renders.
pub struct Telemetry {
    registry: prometheus::Registry,
    // Kept alive: dropping the provider stops the instruments' callbacks.
    _provider: SdkMeterProvider,
    meter: Meter,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

impl Telemetry {
    /// Builds the provider with a Prometheus reader.
    pub fn new() -> Result<Telemetry> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .without_target_info()
            .build()
            .context("cannot build the Prometheus exporter")?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("coherent");
        Ok(Telemetry {
            registry,
            _provider: provider,
            meter,
        })
    }

    /// Observes the engine: keys, clients and commands processed.
    pub fn observe_engine(&self, engine: engine::Engine) {
        let e = engine.clone();
        self.meter
            .u64_observable_gauge("coherent_engine_keys")
            .with_description("Keys in the embedded engine, all databases")
            .with_callback(move |o| o.observe(e.shared().lock().total_keys() as u64, &[]))
            .build();
        let e = engine.clone();
        self.meter
            .u64_observable_gauge("coherent_engine_connected_clients")
            .with_description("Clients connected to the embedded engine")
            .with_callback(move |o| o.observe(e.shared().lock().clients.len() as u64, &[]))
            .build();
        let e = engine.clone();
        self.meter
            .u64_observable_counter("coherent_backstop_ttls_applied")
            .with_description("Keys given a TTL backstop: writes capped by the engine plus keys fixed by the external-Redis sweeper")
            .with_callback(move |o| {
                let swept = crate::sweep::FIXED.load(std::sync::atomic::Ordering::Relaxed);
                o.observe(e.ttl_backstops_applied() + swept, &[])
            })
            .build();
        let e = engine;
        self.meter
            .u64_observable_counter("coherent_engine_commands")
            .with_description("Commands processed by the embedded engine")
            .with_callback(move |o| o.observe(e.shared().lock().stats.commands, &[]))
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
            .f64_observable_gauge("coherent_binlog_lag_seconds")
            .with_description("Seconds from a transaction's commit to its deletes landing (the oldest waiting transaction's age while some wait)")
            .with_callback(move |o| o.observe(s.snapshot().lag_seconds, &[]))
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
}
