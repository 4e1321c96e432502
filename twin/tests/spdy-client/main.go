// Command spdy-client drives the twin's kubelet API (twin/src/kubelet_api) with the
// same client code kube-apiserver uses towards a kubelet: client-go's SPDY
// round-tripper, tools/remotecommand (exec) and tools/portforward. It prints one
// JSON object per run; twin/tests/kubelet_api.rs (go_client_interop, #[ignore]d:
// it needs Go and the module cache) builds and runs it.
//
//	spdy-client exec https://127.0.0.1:PORT '/exec/ns/pod/ctr?command=cat&input=1&output=1&error=1' [stdin]
//	spdy-client portforward https://127.0.0.1:PORT /portForward/ns/pod REMOTE_PORT payload
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
)

type result struct {
	Stdout string `json:"stdout"`
	// StdoutLen counts bytes (Stdout is JSON-escaped, invalid UTF-8 replaced).
	StdoutLen int    `json:"stdout_len"`
	Stderr    string `json:"stderr"`
	Exit      int    `json:"exit"`
	Error     string `json:"error,omitempty"`
	Echo      string `json:"echo,omitempty"`
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: spdy-client exec|portforward BASE PATH [...]")
		os.Exit(2)
	}
	cfg := &rest.Config{Host: os.Args[2], TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	u, err := url.Parse(os.Args[2] + os.Args[3])
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var r result
	switch os.Args[1] {
	case "exec":
		ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
		if err != nil {
			fail(err)
		}
		// The streams the query asks for, as kube-apiserver's StreamTranslator sets them.
		var stdout, stderr bytes.Buffer
		var opts remotecommand.StreamOptions
		if u.Query().Get("output") == "1" {
			opts.Stdout = &stdout
		}
		if u.Query().Get("error") == "1" {
			opts.Stderr = &stderr
		}
		if len(os.Args) > 4 {
			opts.Stdin = strings.NewReader(os.Args[4])
		}
		err = ex.StreamWithContext(ctx, opts)
		r.Stdout, r.Stderr, r.StdoutLen = stdout.String(), stderr.String(), stdout.Len()
		var exitErr utilexec.ExitError
		if errors.As(err, &exitErr) {
			r.Exit = exitErr.ExitStatus()
		} else if err != nil {
			r.Exit = -1
			r.Error = err.Error()
		}
	case "portforward":
		if len(os.Args) < 6 {
			fail(errors.New("portforward needs REMOTE_PORT and payload"))
		}
		rt, upgrader, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			fail(err)
		}
		dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, "POST", u)
		stop, ready := make(chan struct{}), make(chan struct{})
		var out, errOut bytes.Buffer
		pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + os.Args[4]}, stop, ready, &out, &errOut)
		if err != nil {
			fail(err)
		}
		done := make(chan error, 1)
		go func() { done <- pf.ForwardPorts() }()
		select {
		case <-ready:
		case err := <-done:
			fail(fmt.Errorf("forwarding ended before ready: %v", err))
		case <-ctx.Done():
			fail(ctx.Err())
		}
		ports, err := pf.GetPorts()
		if err != nil {
			fail(err)
		}
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local))
		if err != nil {
			fail(err)
		}
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := conn.Write([]byte(os.Args[5])); err != nil {
			fail(err)
		}
		_ = conn.(*net.TCPConn).CloseWrite()
		echo, err := io.ReadAll(conn)
		if err != nil {
			r.Error = err.Error()
		}
		r.Echo = string(echo)
		_ = conn.Close()
		close(stop)
		<-done
		r.Stderr = errOut.String()
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

func fail(err error) {
	_ = json.NewEncoder(os.Stdout).Encode(result{Exit: -2, Error: err.Error()})
	os.Exit(1)
}
