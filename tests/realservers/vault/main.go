// Command vault is HashiCorp Vault's own CLI entry point, built from the released
// module so that the tests run against the real server (Vault's go.mod has replace
// directives, which `go install vault@vX` refuses but a dependant ignores).
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
