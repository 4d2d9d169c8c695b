package main
import (
	_ "github.com/gofiber/fiber/v2"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/sync/singleflight"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "github.com/BurntSushi/toml"
)
func main() {}
