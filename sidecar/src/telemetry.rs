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
