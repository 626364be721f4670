module github.com/ratelimit-ext/ratelimit-ext

go 1.26.8
