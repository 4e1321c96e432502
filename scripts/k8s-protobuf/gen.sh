#!/usr/bin/env bash
# Regenerates the data of the twin's protobuf decoder (twin/src/protobuf/):
#   k8s.binpb      a FileDescriptorSet of Kubernetes' generated.proto files
#                  (k8s.io/api, apimachinery, apiextensions-apiserver), by protoc;
#   k8s-json.tsv   the JSON names and omitempty/pointer/inline facts of their Go
#                  types, by main.go (reflection over the Go struct tags).
# Run once per Kubernetes version bump (VERSION below); the outputs are committed,
# so building the twin needs neither protoc nor Go.
# Needs: protoc (apt-get install -y protobuf-compiler) and Go; the k8s.io modules
# come from the Go module cache (go mod download fetches them if missing).
set -euo pipefail
VERSION=v0.37.2
here=$(cd "$(dirname "$0")" && pwd)
out=$here/../../twin/src/protobuf
cd "$here"
go mod download k8s.io/api@$VERSION k8s.io/apimachinery@$VERSION k8s.io/apiextensions-apiserver@$VERSION
modcache=$(go env GOMODCACHE)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/k8s.io"
for m in api apimachinery apiextensions-apiserver; do
  ln -s "$modcache/k8s.io/$m@$VERSION" "$root/k8s.io/$m"
done
# The import paths inside the .proto files are k8s.io/<module>/...: the symlinks
# give protoc that layout. testapigroup is apimachinery's test fixture.
protos=$(cd "$root" && find -L k8s.io -name generated.proto | grep -v testapigroup | LC_ALL=C sort)
(cd "$root" && protoc -I. --include_imports -o "$out/k8s.binpb" $protos 2>/dev/null)
go run . > "$out/k8s-json.tsv"
echo "wrote $out/k8s.binpb and $out/k8s-json.tsv"
