//! Usernames as a directory compares them. OpenLDAP matches `uid` (caseIgnoreMatch with the
//! RFC 4518 string preparation) ignoring case, compatibility width variants (`ｂob`),
//! surrounding spaces and the length of inner space runs. Throttle buckets and identity
//! checks use this same *folded* form, so `BOB`, ` bob` and `ｂob` are one user to the
//! gateway exactly when they are one user to the directory.

use icu_normalizer::ComposingNormalizerBorrowed;

/// The folded form of `name`: NFKC, case-folded (lower case, then NFKC again because
/// lowering can produce uncomposed sequences), whitespace trimmed and inner runs of
/// whitespace collapsed to one space.
pub fn fold(name: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let lowered = nfkc.normalize(name).to_lowercase();
    let folded = nfkc.normalize(&lowered);
    let mut out = String::with_capacity(folded.len());
    for word in folded.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fold;
    use proptest::prelude::*;

    #[test]
    fn variants_a_directory_treats_as_one_name_fold_together() {
        for v in [
            "bob",
            "BOB",
            "Bob",
            "bob ",
            " bob",
            "\tbob\u{3000}",
            "ｂob",
            "ＢＯＢ",
        ] {
            assert_eq!(fold(v), "bob", "{v:?}");
        }
        assert_eq!(fold("Jane  Q   Doe"), "jane q doe");
        assert_eq!(fold("ALICE"), fold("ａlice"));
        assert_ne!(fold("alice"), fold("alice2"));
        assert_ne!(fold("bob"), fold("b ob"));
        assert_eq!(fold(""), "");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        // Invariant: folding is idempotent (a folded name is its own canonical form), and
        // case or surrounding whitespace never makes two names different.
        #[test]
        fn folding_is_idempotent_and_ignores_case_and_edges(s in "\\PC{0,24}") {
            let once = fold(&s);
            prop_assert_eq!(fold(&once), once.clone());
            prop_assert_eq!(fold(&format!("  {}\t", s.to_uppercase())), fold(&s.to_uppercase()));
            prop_assert!(!once.starts_with(char::is_whitespace));
            prop_assert!(!once.ends_with(char::is_whitespace));
        }
    }
}
