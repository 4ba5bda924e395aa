/**
 * Classification of the globals a pickle imports (GLOBAL, STACK_GLOBAL, INST).
 *
 * Policy: an exact (module, name) allow-list of what PyTorch, NumPy and joblib emit for plain tensors, arrays
 * and state dicts; a deny-list of modules and names that execute code, touch files, processes or the network,
 * or deserialise nested payloads (critical); everything else is "unknown" (medium) because calling an arbitrary
 * importable callable is how every pickle exploit works. Names are checked after Python 2 compatibility renames
 * (`__builtin__` becomes `builtins`), since CPython applies them for protocols < 3.
 */

export type GlobalLevel = 'safe' | 'conditional' | 'unknown' | 'dangerous';

export interface GlobalClass {
  level: GlobalLevel;
  /** Why, for the finding message. */
  reason: string;
  /** Deserialises its argument: the argument, when the scanner can rebuild it, is scanned as a nested pickle. */
  nestedLoader?: boolean;
}

/** Module renames of CPython's `_compat_pickle.IMPORT_MAPPING` that matter for classification. */
const PY2_MODULES: Readonly<Record<string, string>> = {
  __builtin__: 'builtins',
  exceptions: 'builtins',
  copy_reg: 'copyreg',
  cPickle: 'pickle',
  commands: 'subprocess',
  UserDict: 'collections',
  UserList: 'collections',
  urllib2: 'urllib.request',
  httplib: 'http.client',
  SocketServer: 'socketserver',
  thread: '_thread',
  dummy_thread: '_dummy_thread',
  cStringIO: 'io',
  StringIO: 'io',
  Tkinter: 'tkinter',
  xmlrpclib: 'xmlrpc.client',
  SimpleXMLRPCServer: 'xmlrpc.server',
  cookielib: 'http.cookiejar',
  Queue: 'queue',
  repr: 'reprlib',
  multiarray: 'numpy.core.multiarray',
};

/**
 * The allow-list: exact qualified names. Each entry is a constructor of plain data: it rebuilds a tensor,
 * storage, array or container from values that are themselves checked, and imports nothing further.
 */
const SAFE = new Set<string>([
  // Containers and scalars Python pickles by reference.
  'builtins.set',
  'builtins.frozenset',
  'builtins.list',
  'builtins.dict',
  'builtins.tuple',
  'builtins.bytearray',
  'builtins.bytes',
  'builtins.slice',
  'builtins.range',
  'builtins.complex',
  'builtins.int',
  'builtins.float',
  'builtins.str',
  'builtins.bool',
  'builtins.object', // base argument of copyreg._reconstructor for plain objects
  'collections.OrderedDict', // every torch state_dict
  'collections.defaultdict',
  'collections.Counter',
  'collections.deque',
  'datetime.datetime',
  'datetime.date',
  'datetime.time',
  'datetime.timedelta',
  'datetime.timezone',
  // copyreg helpers the pickler itself emits; they only call __new__ of classes that are checked separately.
  'copyreg._reconstructor',
  'copyreg.__newobj__',
  'copyreg.__newobj_ex__',
  // PyTorch tensor reconstruction (the same names torch.load(weights_only=True) admits).
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor_v3',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._utils._rebuild_qtensor',
  'torch._utils._rebuild_sparse_tensor',
  'torch._utils._rebuild_meta_tensor_no_storage',
  'torch._utils._rebuild_nested_tensor',
  'torch._utils._rebuild_device_tensor_from_numpy',
  'torch._tensor._rebuild_from_type_v2',
  'torch.nn.parameter.Parameter',
  'torch.Tensor',
  'torch.Size',
  'torch.device',
  'torch.serialization._get_layout',
  'torch.storage.UntypedStorage',
  'torch.storage.TypedStorage',
  'torch.UntypedStorage',
  'torch.strided',
  'torch.sparse_coo',
  'torch.sparse_csr',
  'torch.per_tensor_affine',
  'torch.per_channel_affine',
  'torch.per_tensor_symmetric',
  'torch.per_channel_symmetric',
  'torch.per_channel_affine_float_qparams',
  // NumPy arrays, scalars and dtypes (numpy 1.x `core` and numpy 2.x `_core`).
  'numpy.core.multiarray._reconstruct',
  'numpy.core.multiarray.scalar',
  'numpy.core.numeric._frombuffer',
  'numpy._core.multiarray._reconstruct',
  'numpy._core.multiarray.scalar',
  'numpy._core.numeric._frombuffer',
  'numpy.dtype',
  'numpy.ndarray',
  // joblib's placeholder for an array whose raw bytes follow in the stream.
  'joblib.numpy_pickle.NumpyArrayWrapper',
  'sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper',
]);

const TORCH_STORAGES = [
  'Float',
  'Double',
  'Half',
  'BFloat16',
  'Long',
  'Int',
  'Short',
  'Char',
  'Byte',
  'Bool',
  'ComplexFloat',
  'ComplexDouble',
  'QInt8',
  'QUInt8',
  'QInt32',
  'QUInt4x2',
  'QUInt2x4',
];
for (const s of TORCH_STORAGES) SAFE.add(`torch.${s}Storage`);

const TORCH_DTYPES = [
  'float32',
  'float',
  'float64',
  'double',
  'float16',
  'half',
  'bfloat16',
  'complex32',
  'complex64',
  'complex128',
  'cfloat',
  'cdouble',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'int8',
  'int16',
  'short',
  'int32',
  'int',
  'int64',
  'long',
  'bool',
  'qint8',
  'quint8',
  'qint32',
  'quint4x2',
  'quint2x4',
  'float8_e4m3fn',
  'float8_e5m2',
  'float8_e4m3fnuz',
  'float8_e5m2fnuz',
  'float8_e8m0fnu',
  'float4_e2m1fn_x2',
];
for (const d of TORCH_DTYPES) SAFE.add(`torch.${d}`);

/**
 * `_codecs.encode(str, 'latin1')` is how Python 3 pickles `bytes` at protocol 2 (legacy torch files, numpy
 * arrays in them). It cannot run code, but it can build arbitrary bytes to feed something else, so it is
 * allowed only in that exact shape; the walker checks the arguments at REDUCE time.
 */
const CONDITIONAL = new Set<string>(['_codecs.encode', 'codecs.encode']);

/** Modules whose every member is dangerous (prefix match on dotted module names). */
const DANGEROUS_MODULES = new Set<string>([
  'os',
  'posix',
  'nt',
  'subprocess',
  '_posixsubprocess',
  'popen2',
  'copyreg',
  'pty',
  'code',
  'codeop',
  'runpy',
  'pip',
  'pkgutil',
  'importlib',
  'imp',
  'zipimport',
  'sys',
  'socket',
  '_socket',
  'socketserver',
  'ssl',
  'http',
  'urllib',
  'urllib3',
  'requests',
  'httpx',
  'aiohttp',
  'ftplib',
  'smtplib',
  'telnetlib',
  'imaplib',
  'poplib',
  'nntplib',
  'xmlrpc',
  'webbrowser',
  'shutil',
  'tempfile',
  'pathlib',
  'glob',
  'io',
  '_io',
  'fileinput',
  'gzip',
  'bz2',
  'lzma',
  'zipfile',
  'tarfile',
  'ctypes',
  '_ctypes',
  'cffi',
  'marshal',
  'pickle',
  '_pickle',
  'pickletools',
  'dill',
  'cloudpickle',
  'jsonpickle',
  'shelve',
  'dbm',
  'sqlite3',
  'types',
  'functools',
  'operator',
  '_operator',
  'itertools',
  'inspect',
  'gc',
  'threading',
  '_thread',
  'multiprocessing',
  'concurrent',
  'asyncio',
  'signal',
  'atexit',
  'pdb',
  'bdb',
  'timeit',
  'cProfile',
  'profile',
  'trace',
  'doctest',
  'pydoc',
  'idlelib',
  'distutils',
  'setuptools',
  'venv',
  'ensurepip',
  'site',
  'platform',
  'uuid',
  'mailcap',
  'mmap',
  'resource',
  'fcntl',
  'msvcrt',
  'winreg',
  '_winreg',
  '_winapi',
  'logging.config',
  'yaml',
  'numpy.f2py',
  'numpy.distutils',
  'numpy.testing',
  'numpy.ctypeslib',
  'numpy.lib.npyio',
  'torch.hub',
  'torch.package',
  'torch.utils.cpp_extension',
  'torch.jit',
  'torch._inductor',
  'torch._dynamo',
  'torch.fx',
  'torch.serialization',
  'pandas.io',
  'tensorflow.io',
  'tensorflow.python.ops.gen_io_ops',
  'tensorflow.python.lib.io',
  'keras.utils',
  'huggingface_hub',
]);

/** Exact names outside the dangerous modules that load, execute or fetch. */
const DANGEROUS_NAMES = new Set<string>([
  'numpy.load',
  'numpy.loadtxt',
  'numpy.fromfile',
  'numpy.save',
  'numpy.savez',
  'numpy.savetxt',
  'numpy.memmap',
  'torch.load',
  'torch.save',
  'torch.from_file',
  'torch.storage._load_from_bytes_unchecked',
  'pandas.read_pickle',
  'pandas.read_csv',
  'pandas.read_json',
  'pandas.read_hdf',
  'pandas.eval',
  'joblib.load',
  'joblib.dump',
  'sklearn.externals.joblib.load',
  'codecs.open',
  'builtins.exec',
]);

/** Deserialisers whose argument is itself a pickle; the scanner recurses into it when it can rebuild it. */
const NESTED_LOADERS: ReadonlyMap<string, GlobalLevel> = new Map<string, GlobalLevel>([
  ['pickle.loads', 'dangerous'],
  ['pickle.load', 'dangerous'],
  ['pickle._loads', 'dangerous'],
  ['pickle._load', 'dangerous'],
  ['_pickle.loads', 'dangerous'],
  ['_pickle.load', 'dangerous'],
  ['dill.loads', 'dangerous'],
  ['cloudpickle.loads', 'dangerous'],
  ['torch.load', 'dangerous'],
  ['joblib.load', 'dangerous'],
  ['numpy.load', 'dangerous'],
  // Emitted by torch when a tensor is pickled with plain pickle: the bytes are a torch.save archive.
  ['torch.storage._load_from_bytes', 'conditional'],
]);

/** Harmless builtins; every other builtin (eval, exec, getattr, open, __import__, map...) is dangerous. */
const SAFE_BUILTINS = new Set<string>([
  'set',
  'frozenset',
  'list',
  'dict',
  'tuple',
  'bytearray',
  'bytes',
  'slice',
  'range',
  'complex',
  'int',
  'float',
  'str',
  'bool',
  'object',
]);

/**
 * Attribute names that, reached through a dotted name (`torch` + `serialization.os.system`), give away an
 * escape to code execution. Protocol >= 4 resolves dotted names by attribute walk, so an allow-listed module
 * prefix proves nothing.
 */
const DANGEROUS_SEGMENTS = new Set<string>([
  'os',
  'sys',
  'subprocess',
  'builtins',
  'system',
  'popen',
  'Popen',
  'exec',
  'eval',
  'compile',
  'open',
  'getattr',
  'setattr',
  'import_module',
  'run',
  'call',
  'check_output',
  'check_call',
  'spawn',
  'fork',
  'execv',
  'execve',
  'loads',
  'load',
  'globals',
  'modules',
  'pickle',
  'marshal',
  'importlib',
  'runpy',
  'operator',
  'functools',
  'socket',
  'shutil',
]);

/**
 * Modules reachable as an attribute of almost any other module (`posixpath.os`, `torch.serialization.sys`):
 * a name ending in one of them hands the unpickler a gateway module, whatever module it is taken from.
 */
const GATEWAY_MODULES = new Set<string>([
  'os',
  'posix',
  'nt',
  'sys',
  'subprocess',
  'builtins',
  'importlib',
  'pickle',
  '_pickle',
  'marshal',
  'socket',
  'shutil',
  'runpy',
  'pty',
  'ctypes',
  'operator',
  'functools',
  'pip',
  'pkgutil',
]);

/** Function names that run commands or code whichever module they are taken from. */
const DANGEROUS_LEAVES = new Set<string>([
  'system',
  'popen',
  'Popen',
  'exec',
  'eval',
  'execfile',
  '__import__',
  'compile',
  'spawnl',
  'spawnle',
  'spawnlp',
  'spawnv',
  'spawnve',
  'spawnvp',
  'execl',
  'execle',
  'execlp',
  'execv',
  'execve',
  'execvp',
  'check_output',
  'check_call',
  'getoutput',
  'getstatusoutput',
  'run_path',
  'run_module',
  'runstring',
  'runctx',
  'load_inline',
  'import_module',
  'reduce_graph_module',
  '_forward_from_src',
]);

function inModuleSet(module: string, set: ReadonlySet<string>): string | undefined {
  let m = module;
  for (;;) {
    if (set.has(m)) return m;
    const dot = m.lastIndexOf('.');
    if (dot < 0) return undefined;
    m = m.slice(0, dot);
  }
}

const isDunder = (s: string): boolean => s.length > 4 && s.startsWith('__') && s.endsWith('__');

/** Applies CPython's Python 2 compatibility renames. */
export function normalizeModule(module: string): string {
  return PY2_MODULES[module] ?? module;
}

export function classifyGlobal(rawModule: string, name: string): GlobalClass {
  const module = normalizeModule(rawModule);
  const qualified = `${module}.${name}`;
  const segments = name.split('.');
  const leaf = segments[segments.length - 1] ?? name;

  const nested = NESTED_LOADERS.get(qualified);
  if (nested !== undefined) {
    return {
      level: nested === 'dangerous' ? 'dangerous' : 'conditional',
      reason: 'deserialises a nested payload',
      nestedLoader: true,
    };
  }
  if (module === 'builtins' && segments.length === 1) {
    return SAFE_BUILTINS.has(name)
      ? { level: 'safe', reason: 'allow-listed builtin' }
      : { level: 'dangerous', reason: 'builtin outside the harmless container/scalar set' };
  }
  const badModule = inModuleSet(module, DANGEROUS_MODULES);
  if (badModule !== undefined) {
    if (SAFE.has(qualified)) return { level: 'safe', reason: 'allow-listed' };
    return {
      level: 'dangerous',
      reason: `module ${badModule} runs code or reaches files, processes or network`,
    };
  }
  if (DANGEROUS_NAMES.has(qualified)) return { level: 'dangerous', reason: 'loads, executes or writes' };
  // `__main__` is where classes of the producer's own script live: unknown, like any other module.
  if (segments.some(isDunder) || module.split('.').some((m) => isDunder(m) && m !== '__main__')) {
    return { level: 'dangerous', reason: 'dunder attribute walk (__globals__, __builtins__...)' };
  }
  if (segments.length > 1 && segments.some((s) => DANGEROUS_SEGMENTS.has(s))) {
    return { level: 'dangerous', reason: 'dotted name walks to a dangerous attribute' };
  }
  if (DANGEROUS_LEAVES.has(leaf)) return { level: 'dangerous', reason: `${leaf} runs commands or code` };
  if (GATEWAY_MODULES.has(leaf))
    return { level: 'dangerous', reason: `reaches the ${leaf} module by attribute` };
  if (CONDITIONAL.has(qualified))
    return { level: 'conditional', reason: 'allowed only as _codecs.encode(str, "latin1")' };
  if (SAFE.has(qualified)) return { level: 'safe', reason: 'allow-listed' };
  if (module === 'numpy.dtypes' && /^[A-Za-z0-9]+DType$/.test(name)) {
    return { level: 'safe', reason: 'numpy dtype class' };
  }
  return { level: 'unknown', reason: 'not on the allow-list' };
}

/** The allow-list, for documentation and tests. */
export function allowList(): readonly string[] {
  return [...SAFE].sort();
}
