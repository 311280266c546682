export * from './ports.js';
export * from './eventually.js';
export * from './infra.js';
export * from './etcd.js';
export * from './consul.js';
export * from './docker.js';
export * from './tcp-proxy.js';
export * from './mesh.js';
