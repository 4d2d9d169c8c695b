// Package rubyfmt reads and writes the Ruby formats of a gem repository,
// byte for byte as RubyGems 3.3 (Psych 4, Ruby 3.1) writes them: .gem files
// (BuildGem: the tar of metadata.gz, data.tar.gz and checksums.yaml.gz) and
// their YAML gemspecs, the YAML of Ruby's to_yaml (ToYAML), Ruby Marshal
// 4.8 specs files (GoSpecsIndex, or RubyMarshal with a real ruby), and
// Gem::Version / Gem::Requirement semantics (CompareVersions,
// RequirementString). ParseGem reads the gemspec of any real .gem back,
// Psych or Syck era.
//
// It is test-support code: the fake rubygems.org of package testupstream
// and the benchmarks build their gems with it, and RequireTools, RubyEnv
// and RunTool let tests check its output with the real ruby, gem and
// bundle commands.
package rubyfmt
