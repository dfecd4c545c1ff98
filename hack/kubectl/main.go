// Command kubectl is upstream kubectl (k8s.io/kubernetes/cmd/kubectl/kubectl.go),
// built from the published k8s.io/kubectl module so no k8s.io/kubernetes staging
// replaces are needed. Built and cached by hack/kubectl/build.sh; the tests use
// it for `kubectl kustomize` and `kubectl apply` against the test control plane.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Import to initialize client auth plugins.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
