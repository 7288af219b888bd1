//! Kubernetes' syntax for object names and labels, as the apiserver checks them on every write
//! and as `ingress-failover check` checks the names a policy refers to. Each rule returns the
//! apiserver's explanation without the offending value; callers say which value and where.

/// The longest DNS label (namespaces, Services, label names): 63 characters.
const LABEL_MAX: usize = 63;
/// The longest DNS subdomain (most object names): 253 characters.
const SUBDOMAIN_MAX: usize = 253;

fn label_chars_ok(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Kubernetes' RFC 1123 label (Namespaces, port names).
pub fn dns1123_label(value: &str) -> Result<(), &'static str> {
    if value.len() > LABEL_MAX {
        return Err("must be no more than 63 characters");
    }
    if !label_chars_ok(value) {
        return Err(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc')",
        );
    }
    Ok(())
}

/// Kubernetes' RFC 1123 subdomain (most object names: Deployments, Ingresses, IngressClasses,
/// ConfigMaps, custom resources; label key prefixes): dot-separated RFC 1123 labels.
pub fn dns1123_subdomain(value: &str) -> Result<(), &'static str> {
    if value.len() > SUBDOMAIN_MAX {
        return Err("must be no more than 253 characters");
    }
    if !value.split('.').all(label_chars_ok) {
        return Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
        );
    }
    Ok(())
}

/// Kubernetes' RFC 1035 label (Service names: they become DNS names and must start with a
/// letter).
pub fn dns1035_label(value: &str) -> Result<(), &'static str> {
    if value.len() > LABEL_MAX {
        return Err("must be no more than 63 characters");
    }
    if !label_chars_ok(value) || !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name' or 'abc-123')",
        );
    }
    Ok(())
}

/// A qualified name (a label key's name part, a non-empty label value): at most 63
/// alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
fn qualified_name_ok(value: &str) -> bool {
    value.len() <= LABEL_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label key: an optional DNS subdomain prefix and `/`, then a qualified name.
pub fn label_key(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            dns1123_subdomain(prefix)
                .map_err(|_| "prefix part must be a lowercase RFC 1123 subdomain")?;
            name
        }
        None => key,
    };
    if qualified_name_ok(name) {
        Ok(())
    } else {
        Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63 characters)",
        )
    }
}

/// A label value: empty, or a qualified name.
pub fn label_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || qualified_name_ok(value) {
        Ok(())
    } else {
        Err(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63 characters)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(dns1123_label("a-1").is_ok());
        assert!(dns1123_label("1a").is_ok());
        assert!(dns1123_label("-a").is_err());
        assert!(dns1123_label("a.b").is_err());
        assert!(dns1123_label("").is_err());
        assert!(dns1123_label(&"a".repeat(63)).is_ok());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("web-1.example").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1123_subdomain("a.-b").is_err());
        assert!(dns1123_subdomain("Web").is_err());
        assert!(dns1123_subdomain("").is_err());
        assert!(dns1123_subdomain(&"a".repeat(254)).is_err());
    }

    #[test]
    fn service_names_start_with_a_letter() {
        assert!(dns1035_label("web").is_ok());
        assert!(dns1035_label("web-1").is_ok());
        assert!(dns1035_label("1web").is_err());
        assert!(dns1035_label("web.x").is_err());
        assert!(dns1035_label(&"a".repeat(64)).is_err());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key("app").is_ok());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("My_Key.1").is_ok());
        assert!(label_key("").is_err());
        assert!(label_key("-app").is_err());
        assert!(label_key("Bad_Prefix/app").is_err());
        assert!(label_key("example.com/").is_err());
        assert!(label_key(&"a".repeat(64)).is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_x-y").is_ok());
        assert!(label_value("-v").is_err());
        assert!(label_value("a b").is_err());
        assert!(label_value(&"a".repeat(64)).is_err());
    }
}
