package limiter

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/redis/go-redis/v9"
)

// CheckURL parses a Redis URL with go-redis's parser for mode, the one the engine
// uses: nil when it accepts the URL. Otherwise the error says why in words that never
// hold the URL's secrets (see urlReason), so it can be printed and logged.
func CheckURL(raw string, mode RedisMode) error {
	parse := urlParser(mode)
	if err := parse(raw); err != nil {
		return errors.New(urlReason(raw, parse, err))
	}
	return nil
}

// urlParser is go-redis's parser of a mode's URLs.
func urlParser(mode RedisMode) func(string) error {
	switch mode {
	case RedisCluster:
		return func(s string) error { _, err := redis.ParseClusterURL(s); return err }
	case RedisSentinel:
		return func(s string) error { _, err := redis.ParseFailoverURL(s); return err }
	}
	return func(s string) error { _, err := redis.ParseURL(s); return err }
}

// urlError is go-redis's refusal of a mode's URL, as "redis: URL: why" ("cluster
// URL", "sentinel URL" in those modes), why as urlReason gives it; it unwraps to
// go-redis's error.
func urlError(mode RedisMode, raw string, err error) error {
	kind := "URL"
	if mode == RedisCluster || mode == RedisSentinel {
		kind = string(mode) + " URL"
	}
	return fmt.Errorf("redis: %s: %w", kind, reworded{urlReason(raw, urlParser(mode), err), err})
}

// urlReason says why parse refused raw without repeating a secret. A url.Error quotes
// the URL whole; and a password with an unescaped / # ? or @ splits the URL at the
// wrong place, so that the parser's own reason quotes part of it (`invalid port
// ":Xy9" after host`). So the URL is parsed again with its user information and any
// password= value replaced: that reason holds no secret. When the redacted URL parses,
// the secret itself was the problem, and the reason says how to write it.
func urlReason(raw string, parse func(string) error, err error) string {
	if redacted := redactSecrets(raw); redacted != raw {
		err = parse(redacted)
		if err == nil {
			return "the user information does not parse: percent-encode / # ? @ : and % in the user name and password"
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return strings.TrimPrefix(err.Error(), "redis: ") // go-redis's own errors begin so
}

// passwordParam matches a password in a URL's query (sentinel mode's password=, and
// any *password= option).
var passwordParam = regexp.MustCompile(`(?i)([?&][a-z_]*password=)[^&#]*`)

// redactSecrets replaces a URL's user information (everything between :// and the
// last @, which a password with an unescaped @ or / cannot escape) and the values of
// its password options with REDACTED.
func redactSecrets(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.LastIndexByte(raw[i+3:], '@'); j >= 0 {
			raw = raw[:i+3] + "REDACTED" + raw[i+3+j:]
		}
	}
	return passwordParam.ReplaceAllString(raw, "${1}REDACTED")
}

// HasSecret says whether a URL may hold a secret (user information or a password
// option), so that a message about it should not quote it.
func HasSecret(raw string) bool { return redactSecrets(raw) != raw }
