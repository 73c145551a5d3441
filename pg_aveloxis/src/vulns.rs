//! Vulnerability scoring (docs/dependencies.md, "Vulnerabilities"): CVSS vectors from OSV
//! records scored by the `cvss` crate (v2, v3.0, v3.1 and v4.0), never invented: a vector
//! that does not parse has no score (NULL), and a record without a vector has none.

use std::str::FromStr;

/// The base score and severity of a CVSS vector, and its version (`2.0`, `3.0`, `3.1`,
/// `4.0`); None when the text is no vector the crate scores.
pub fn score(vector: &str) -> Option<(f64, &'static str, &'static str)> {
    let parsed = cvss::Cvss::from_str(vector.trim()).ok()?;
    let version = match &parsed {
        cvss::Cvss::CvssV20(_) => "2.0",
        cvss::Cvss::CvssV30(_) => "3.0",
        cvss::Cvss::CvssV31(_) => "3.1",
        cvss::Cvss::CvssV40(_) => "4.0",
        _ => return None,
    };
    let score = parsed.score();
    score
        .is_finite()
        .then_some((score, parsed.severity().as_str(), version))
}

#[pgrx::pg_schema]
mod aveloxis_ops {
    use pgrx::prelude::*;

    /// `aveloxis_ops.cvss_score(vector)`: base score, severity (none, low, medium, high,
    /// critical) and CVSS version of a vector; no row for text that is no vector.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn cvss_score(
        vector: &str,
    ) -> TableIterator<'static, (name!(score, f64), name!(severity, String), name!(cvss_version, String))> {
        TableIterator::new(super::score(vector).map(|(s, sev, v)| (s, sev.to_owned(), v.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::score;

    /// Base scores as published: NVD's for the v3.1 vectors (CVE-2021-44228, Log4Shell: 10.0;
    /// a network, no-privilege, confidentiality-only vector: 7.5) and the v2 vector of
    /// CVE-2014-0160 (Heartbleed: 5.0); FIRST's v4.0 calculator for the first v4 vector
    /// (9.3). The second v4 vector is pinned at what the crate computes, so a change of the
    /// scorer shows.
    #[test]
    fn vectors_score_as_published() {
        assert_eq!(
            score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"),
            Some((10.0, "critical", "3.1"))
        );
        assert_eq!(
            score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"),
            Some((7.5, "high", "3.1"))
        );
        assert_eq!(score("AV:N/AC:L/Au:N/C:P/I:N/A:N"), Some((5.0, "medium", "2.0")));
        assert_eq!(
            score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            Some((9.3, "critical", "4.0"))
        );
        assert_eq!(
            score("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            Some((8.5, "high", "4.0"))
        );
        assert_eq!(score("HIGH"), None, "a label is no vector: no invented score");
        assert_eq!(score(""), None);
    }
}
