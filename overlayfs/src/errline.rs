//! The one line a binary of this workspace prints for an error (strata, strata-overlayfs and
//! strata-bench share it).

/// The error and its causes joined with ": ", leaving out a cause whose text the line already holds:
/// many errors here print their source in their own message and also name it as their source, so
/// walking the chain naively (anyhow's `{:#}`) printed it twice.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("writing x: {source}")]
        Embeds { source: std::io::Error },
        #[error("writing y")]
        Names {
            #[source]
            source: std::io::Error,
        },
    }

    #[test]
    fn each_cause_appears_once() {
        let io = || std::io::Error::from_raw_os_error(libc::ERANGE);
        let text = io().to_string();
        assert_eq!(
            one_line(&Outer::Embeds { source: io() }),
            format!("writing x: {text}")
        );
        assert_eq!(
            one_line(&Outer::Names { source: io() }),
            format!("writing y: {text}")
        );
    }
}
