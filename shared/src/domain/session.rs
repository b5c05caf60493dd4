//! Session lifetimes: short access tokens, rotating refresh tokens.

/// An access token's life (DESIGN §6: 15 minutes).
pub const ACCESS_TOKEN_SECS: i64 = 15 * 60;
/// A session lives at most this long, however often it is refreshed.
pub const REFRESH_ABSOLUTE_SECS: i64 = 7 * 24 * 60 * 60;
/// A refresh token not used for this long expires.
pub const REFRESH_IDLE_SECS: i64 = 24 * 60 * 60;

/// Until when a refresh token issued at `now` in a session ending at `session_ends`
/// may be used: idle expiry, never beyond the session's end.
pub fn refresh_usable_until(now: i64, session_ends: i64) -> i64 {
    (now + REFRESH_IDLE_SECS).min(session_ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_never_outlives_its_session() {
        assert_eq!(
            refresh_usable_until(0, REFRESH_ABSOLUTE_SECS),
            REFRESH_IDLE_SECS
        );
        assert_eq!(refresh_usable_until(1_000, 2_000), 2_000);
    }
}
