//! Errors as people read them: with every cause.

/// An error with its whole cause chain, `outer: inner: innermost`, so that the operating
/// system's reason (connection refused, permission denied, no such file) reaches the message,
/// where an HTTP client's own text says only "error sending request"; a cause whose text the
/// message already holds is not repeated.
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_name_every_cause_once() {
        let io = std::io::Error::from_raw_os_error(13);
        let outer = std::io::Error::other(io);
        // The wrapper's text is its cause's, so it appears once.
        assert_eq!(error_chain(&outer), "Permission denied (os error 13)");
        let e: Box<dyn std::error::Error> = "client error (Connect)".into();
        assert_eq!(error_chain(e.as_ref()), "client error (Connect)");
    }
}
