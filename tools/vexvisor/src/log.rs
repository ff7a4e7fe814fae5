//! Structured log lines on stderr: `vexvisor: level=info event=upgrade_start name=v2 …`, one
//! line per event, values quoted when they contain spaces, so they read well and grep well.

use std::fmt::Write;

fn line(level: &str, event: &str, fields: &[(&str, &str)]) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut s = format!(
        "vexvisor: ts={}.{:03} level={level} event={event}",
        ms / 1000,
        ms % 1000
    );
    for (k, v) in fields {
        if v.is_empty() || v.contains([' ', '"', '=', '\n']) {
            let _ = write!(s, " {k}={v:?}");
        } else {
            let _ = write!(s, " {k}={v}");
        }
    }
    s
}

/// An informational event.
pub fn info(event: &str, fields: &[(&str, &str)]) {
    eprintln!("{}", line("info", event, fields));
}

/// Something went wrong but the supervisor carries on.
pub fn warn(event: &str, fields: &[(&str, &str)]) {
    eprintln!("{}", line("warn", event, fields));
}

/// Something failed.
pub fn error(event: &str, fields: &[(&str, &str)]) {
    eprintln!("{}", line("error", event, fields));
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_with_spaces_are_quoted() {
        let l = super::line("info", "e", &[("a", "b"), ("msg", "two words"), ("z", "")]);
        let (ts, rest) = l
            .strip_prefix("vexvisor: ts=")
            .and_then(|r| r.split_once(' '))
            .expect("timestamp first");
        assert!(ts.parse::<f64>().is_ok(), "{ts}");
        assert_eq!(rest, r#"level=info event=e a=b msg="two words" z="""#);
    }
}
