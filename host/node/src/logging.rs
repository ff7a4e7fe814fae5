//! Logging of the node's binaries: to stderr, filtered by `VEXIDUS_LOG` (tracing's
//! `EnvFilter` syntax), in colour only on a terminal.

/// Installs the subscriber; call it once, at the start of `main`.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VEXIDUS_LOG").unwrap_or_else(|_| {
                // libp2p's request-response warns once per inbound stream past the
                // per-connection limit: a flooding peer would write thousands of lines a
                // second. The node logs what it refuses itself.
                tracing_subscriber::EnvFilter::new(
                    "info,jsonrpsee=warn,wasmtime=warn,cranelift=warn,libp2p_request_response=error",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
