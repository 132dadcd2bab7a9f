// The node's fixed names and addresses, and the configuration files of its
// processes: containerd, the CNI bridge, the kubelet and CoreDNS.
import { join } from 'node:path';
import { PAUSE_IMAGE } from './images.ts';

export const NODE_NAME = 'sigil-node';
/** The pods' bridge and subnet: names and addresses this project owns on the host. */
export const BRIDGE = 'sigil0';
export const POD_SUBNET = '10.244.0.0/24';
/** The bridge's address: the node's IP, the pods' gateway and the cluster DNS server. */
export const NODE_IP = '10.244.0.1';
/** All pod and container cgroups live under this one, in every hierarchy. */
export const CGROUP_ROOT = '/sigil';
/** The `kubernetes` Service's ClusterIP: the first address of the control plane's 10.96.0.0/16. */
export const KUBERNETES_SERVICE_IP = '10.96.0.1';
/** Where pods reach the API server (the `kubernetes` Service's endpoint): see apiserver-relay.ts. */
export const RELAY_PORT = 6443;

/** The kubelet's configurable bits that tests change. */
export interface KubeletOptions {
  /** How often the kubelet re-reads Secrets and ConfigMaps for running pods (default 1m). */
  syncFrequency?: string;
}

export function containerdConfig(dir: string, socket: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${socket}"

[ttrpc]
  address = "${socket}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/containerd/opt"

[${cri}]
  sandbox_image = "${PAUSE_IMAGE}"
  # These machines lack CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[${cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[${cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "${dir}/cni/net.d"
`;
}

export function cniConfig(dir: string): string {
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: 'sigil',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          // Pods talk to each other, the host and Services; nothing leaves the node, so no NAT rules.
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: POD_SUBNET, gateway: NODE_IP }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: join(dir, 'cni', 'ipam'),
          },
        },
        { type: 'loopback' },
      ],
    },
    null,
    2,
  );
}

export function kubeletConfig(
  dir: string,
  socket: string,
  ports: { kubelet: number; healthz: number },
  options: KubeletOptions,
) {
  const pki = join(dir, 'pki');
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: ${ports.kubelet}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${ports.healthz}
tlsCertFile: ${join(pki, 'kubelet.crt')}
tlsPrivateKeyFile: ${join(pki, 'kubelet.key')}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: ${join(pki, 'kubelet-client-ca.crt')}
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://${socket}
imageServiceEndpoint: unix://${socket}
cgroupDriver: cgroupfs
# From 1.35 the kubelet refuses cgroup v1 unless told otherwise; these machines have only v1.
failCgroupV1: false
cgroupRoot: ${CGROUP_ROOT}
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
clusterDNS: [${NODE_IP}]
clusterDomain: cluster.local
syncFrequency: ${options.syncFrequency ?? '1m'}
podLogsDir: ${join(dir, 'pod-logs')}
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
`;
}

export function corefile(kubeconfig: string): string {
  return `.:53 {
    bind ${NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig ${kubeconfig} sigil-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`;
}
