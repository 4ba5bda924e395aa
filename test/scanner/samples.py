"""Builds the scanner's test samples into a directory (argv[1]), using only the standard library.

Nothing here unpickles anything: malicious pickles are either hand-assembled opcodes or produced by
pickle.dumps of objects whose __reduce__ names a dangerous callable (pickling only records the reference).
Fake `torch`, `numpy` and `joblib` modules stand in for the real ones so that the pickler emits the same
globals those libraries do, without them being installed.
"""

import base64
import gzip
import io
import json
import marshal
import os
import pickle
import struct
import sys
import tarfile
import types
import zipfile
import zlib
from collections import OrderedDict

OUT = sys.argv[1]


def write(name, data):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# --- opcode helpers -------------------------------------------------------------------------------------


def su(s):
    """SHORT_BINUNICODE."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def bu(s):
    """BINUNICODE."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def sbb(b):
    """SHORT_BINBYTES / BINBYTES."""
    if len(b) < 256:
        return b"C" + bytes([len(b)]) + b
    return b"B" + struct.pack("<I", len(b)) + b


def stack_global(module, name, arg):
    """protocol 4: module/name memoised then STACK_GLOBAL, called with one string."""
    return b"\x80\x04" + su(module) + b"\x94" + su(name) + b"\x94\x93\x94" + su(arg) + b"\x85R."


def call_global(module, name, arg_ops):
    """protocol 2 GLOBAL then REDUCE with a 1-tuple built from arg_ops."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + arg_ops + b"\x85R."


class Reduce:
    def __init__(self, fn, args):
        self.fn = fn
        self.args = args

    def __reduce__(self):
        return (self.fn, self.args)


# --- fake library modules -------------------------------------------------------------------------------


def fake_module(name):
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


torch = fake_module("torch")
torch_utils = fake_module("torch._utils")


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class FloatStorage:
    pass


FloatStorage.__module__ = "torch"
torch.FloatStorage = FloatStorage


class Storage:
    def __init__(self, key, numel):
        self.key = key
        self.numel = numel


class Tensor:
    def __init__(self, storage, shape):
        self.storage = storage
        self.shape = shape

    def __reduce__(self):
        stride = tuple(int(x) for x in [self.shape[1], 1]) if len(self.shape) == 2 else (1,)
        return (_rebuild_tensor_v2, (self.storage, 0, self.shape, stride, False, OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj, protocol=2):
    buf = io.BytesIO()
    TorchPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def state_dict(n=3, extra=None):
    sd = OrderedDict()
    for i in range(n):
        sd[f"layer{i}.weight"] = Tensor(Storage(str(i), 4), (2, 2))
    if extra is not None:
        sd["extra"] = extra
    return sd


numpy = fake_module("numpy")
joblib = fake_module("joblib")
joblib_np = fake_module("joblib.numpy_pickle")


class ndarray:
    pass


ndarray.__module__ = "numpy"
numpy.ndarray = ndarray


class dtype:
    def __init__(self, code, state):
        self.code = code
        self.state = state

    def __reduce__(self):
        return (dtype, (self.code, False, True), self.state)


dtype.__module__ = "numpy"
numpy.dtype = dtype

F8 = dtype("f8", (3, "<", None, None, None, -1, -1, 0))
OBJ = dtype("O8", (3, "|", None, None, None, -1, -1, 63))


class NumpyArrayWrapper:
    pass


NumpyArrayWrapper.__module__ = "joblib.numpy_pickle"
joblib_np.NumpyArrayWrapper = NumpyArrayWrapper


class FakeArray:
    def __init__(self, dt, shape, raw=None, objects=None):
        self.dt = dt
        self.shape = shape
        self.raw = raw
        self.objects = objects


class JoblibPickler(pickle._Pickler):
    """What joblib's NumpyPickler writes: the wrapper, then the array's raw bytes in the stream."""

    def save(self, obj, save_persistent_id=True):
        if not isinstance(obj, FakeArray):
            return super().save(obj, save_persistent_id)
        w = NumpyArrayWrapper()
        w.subclass = ndarray
        w.shape = obj.shape
        w.order = "C"
        w.dtype = obj.dt
        w.allow_mmap = obj.objects is None
        if obj.objects is None:
            w.numpy_array_alignment_bytes = 16
        super().save(w)
        if self.proto >= 4:
            self.framer.commit_frame(force=True)
        if obj.objects is not None:
            pickle.dump(obj.objects, self._file_write.__self__, protocol=2)
        else:
            pos = self._file_write.__self__.tell() + 1
            pad = 16 - (pos % 16)
            self._file_write(bytes([pad]) + b"\xff" * pad + obj.raw)


def joblib_dump(obj, protocol=4):
    buf = io.BytesIO()
    JoblibPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


# --- zip builder (raw control over headers) ---------------------------------------------------------------


def build_zip(entries, prepend=b""):
    """entries: dicts with name, data, and optional method, flags, cd_name, cd_flags, descriptor, local_sizes."""
    out = bytearray(prepend)
    central = bytearray()
    for e in entries:
        data = e["data"]
        method = e.get("method", 0)
        comp = data if method == 0 else zlib.compress(data, 9)[2:-4]
        crc = zlib.crc32(data)
        flags = e.get("flags", 0)
        name = e["name"].encode()
        local_at = len(out) - len(prepend) if e.get("relative_to_prepend", True) else len(out)
        descriptor = flags & 0x8
        lcrc, lcs, lus = (0, 0, 0) if descriptor else (crc, len(comp), len(data))
        if "local_sizes" in e:
            lcs, lus = e["local_sizes"]
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0, lcrc, lcs, lus, len(name), 0)
        out += name + comp
        if descriptor:
            out += struct.pack("<IIII", 0x08074B50, crc, len(comp), len(data))
        cd_name = e.get("cd_name", e["name"]).encode()
        cd_flags = e.get("cd_flags", flags)
        ext_attr = e.get("ext_attr", 0)
        made_by = e.get("made_by", 20)
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            made_by,
            20,
            cd_flags,
            method,
            0,
            0,
            crc,
            len(comp),
            len(data),
            len(cd_name),
            0,
            0,
            0,
            0,
            ext_attr,
            e.get("cd_offset", local_at),
        )
        if e.get("in_cd", True):
            central += cd_name
        else:
            central = central[: -struct.calcsize("<IHHHHHHIIIHHHHHII")]
    cd_offset = len(out) - len(prepend)
    out += central
    n = sum(1 for e in entries if e.get("in_cd", True))
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_offset, 0)
    return bytes(out)


def pyzip(files, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


def torch_zip(data_pkl, storages=("0", "1", "2"), extra=()):
    files = [("archive/data.pkl", data_pkl), ("archive/byteorder", b"little"), ("archive/version", b"3\n")]
    files += [(f"archive/data/{k}", struct.pack("<4f", 1, 2, 3, 4)) for k in storages]
    files += [("archive/.data/serialization_id", b"1234567890")]
    files += list(extra)
    return pyzip(files)


def tar_bytes(members):
    """members: (TarInfo kwargs, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for kw, data in members:
            info = tarfile.TarInfo(kw.pop("name"))
            for k, v in kw.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return buf.getvalue()


def npy(descr, shape, data, version=1):
    header = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, shape)
    pre = 6 + 2 + (2 if version == 1 else 4)
    total = pre + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode("latin1") + data


def safetensors(tensors, metadata=None, header_override=None, trailing=b""):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = bytearray()
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header_override if header_override is not None else json.dumps(header)
    hb = text.encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    return struct.pack("<Q", len(hb)) + hb + bytes(data) + trailing


# --- protobuf (ONNX) -----------------------------------------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_int(field, v):
    return varint(field << 3) + varint(v)


def pb_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def onnx_model(location, domain=""):
    entry = pb_bytes(1, "location") + pb_bytes(2, location)
    tensor = pb_int(1, 4) + pb_int(2, 1) + pb_bytes(8, "w") + pb_bytes(13, entry) + pb_int(14, 1)
    inline = pb_int(1, 2) + pb_int(2, 1) + pb_bytes(8, "b") + pb_bytes(9, b"\0" * 8)
    node = pb_bytes(1, "x") + pb_bytes(2, "y") + pb_bytes(4, "Relu") + pb_bytes(7, domain)
    graph = pb_bytes(1, node) + pb_bytes(2, "g") + pb_bytes(5, tensor) + pb_bytes(5, inline)
    opset = pb_bytes(1, "") + pb_int(2, 17)
    return pb_int(1, 8) + pb_bytes(2, "pytorch") + pb_bytes(7, graph) + pb_bytes(8, opset)


# --- GGUF ----------------------------------------------------------------------------------------------


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors=(), n_kv=None, n_tensors=None):
    out = b"GGUF" + struct.pack("<I", 3)
    out += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
    for k, v in kvs:
        out += gguf_str(k)
        if isinstance(v, str):
            out += struct.pack("<I", 8) + gguf_str(v)
        else:
            out += struct.pack("<II", 4, v)
    offset = 0
    for name, numel in tensors:
        out += gguf_str(name) + struct.pack("<I", 1) + struct.pack("<Q", numel) + struct.pack("<I", 0)
        out += struct.pack("<Q", offset)
        offset += numel * 4
        offset += (32 - offset % 32) % 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    return out + b"\0" * offset


# --- samples -------------------------------------------------------------------------------------------

os_system = Reduce(os.system, ("echo pwned",))
for proto in range(0, 6):
    write(f"pickle/os_system_p{proto}.pkl", pickle.dumps(os_system, protocol=proto))
write("pickle/eval.pkl", pickle.dumps(Reduce(eval, ("1+1",)), protocol=2))
write("pickle/py2_builtin.pkl", b"c__builtin__\neval\n(S'1+1'\ntR.")
write("pickle/commands.pkl", b"ccommands\ngetoutput\n(S'id'\ntR.")
write("pickle/pip_main.pkl", b"\x80\x04" + su("pip") + su("main") + b"\x93](" + su("install") + su("evil") + b"e\x85R.")
write(
    "pickle/pkgutil_resolve.pkl",
    b"\x80\x04" + su("pkgutil") + su("resolve_name") + b"\x93" + su("os:system") + b"\x85R" + su("id") + b"\x85R.",
)
write("pickle/importlib.pkl", stack_global("importlib", "import_module", "os"))
# operator.attrgetter('system')(importlib.import_module('os'))('id')
write(
    "pickle/attrgetter.pkl",
    b"\x80\x04"
    + su("operator") + su("attrgetter") + b"\x93" + su("system") + b"\x85R"
    + su("importlib") + su("import_module") + b"\x93" + su("os") + b"\x85R"
    + b"\x85R" + su("id") + b"\x85R.",
)
write("pickle/dotted.pkl", stack_global("torch", "serialization.os.system", "id"))
inner = pickle.dumps(os_system, protocol=4)
write("pickle/nested_loads.pkl", b"\x80\x04" + su("pickle") + su("loads") + b"\x93" + sbb(inner) + b"\x85R.")
# Protocol 2 has no bytes opcode: bytes travel as _codecs.encode(text, 'latin1').
write(
    "pickle/nested_codecs.pkl",
    b"\x80\x02cpickle\nloads\nc_codecs\nencode\n" + bu(inner.decode("latin1")) + bu("latin1") + b"\x86R\x85R.",
)
# Module and name memoised far away (inside a dict), fetched back with BINGET/LONG_BINGET.
write(
    "pickle/memo_stack_global.pkl",
    b"\x80\x04}" + su("o" + "s") + b"q\x07" + su("x") + b"s0" + su("sys" + "tem") + b"r\x00\x01\x00\x00" + b"0"
    + b"h\x07j\x00\x01\x00\x00\x93" + su("id") + b"\x85R.",
)
# Operands computed by a call (builtins.str is harmless in itself): the target cannot be read.
write(
    "pickle/stack_global_computed.pkl",
    b"\x80\x04" + su("builtins") + su("str") + b"\x93" + su("os") + b"\x85R" + su("system") + b"\x93" + su("id") + b"\x85R.",
)
write("pickle/inst.pkl", b"(S'id'\nios\nsystem\n.")
write("pickle/obj.pkl", b"\x80\x01(cos\nsystem\nS'id'\no.")
write("pickle/ext.pkl", b"\x80\x02\x82\x01(S'id'\ntR.")
write("pickle/ext4.pkl", b"\x80\x02\x84\x00\x01\x00\x00(S'id'\ntR.")
write("pickle/unicode_escape.pkl", b"(V\\u006fs\nVsy\\u0073tem\n\x93S'id'\n\x85R.")
write("pickle/string_escape.pkl", b"S'o\\x73'\nS'\\163ystem'\n\x93S'id'\n\x85R.")
write("pickle/build_dunder.pkl", b"\x80\x04" + su("builtins") + su("object") + b"\x93)\x81}" + su("__setstate__") + b"Nsb.")
write("pickle/build_global.pkl", b"\x80\x04" + su("collections") + su("OrderedDict") + b"\x93N}" + su("x") + b"K\x01s\x86b.")
write("pickle/codecs_unusual.pkl", b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00osX\x05\x00\x00\x00rot13\x86R.")
benign = pickle.dumps({"a": [1, 2.5, "x", b"y", None, True]}, protocol=4)
write("pickle/second_pickle.pkl", benign + pickle.dumps(os_system, protocol=2))
write("pickle/trailing_garbage.pkl", benign + b"\x00\x01\x02 not a pickle")
write("pickle/truncated.pkl", pickle.dumps(os_system, protocol=2)[:-6])
write("pickle/not_proto.pkl", b"\x80\x09N.")
write("pickle/underflow.pkl", b"\x80\x02R.")
write("pickle/benign_p0.pkl", pickle.dumps({"a": [1, 2, (3, 4)], "b": "text"}, protocol=0))
write("pickle/benign_p1.pkl", pickle.dumps({"a": [1, 2, (3, 4)], "b": "text", "c": {1, 2}}, protocol=1))
write("pickle/benign_p5.pkl", pickle.dumps({"a": [1, 2, (3, 4)], "b": b"x" * 300, "c": frozenset([1])}, protocol=5))
write("pickle/state_dict.pkl", torch_pickle(state_dict()))
write("pickle/state_dict_p4.pkl", torch_pickle(state_dict(), protocol=4))
write("pickle/unknown_global.pkl", b"\x80\x02csklearn.linear_model._base\nLinearRegression\n)\x81}b.")

# PyTorch zip archives.
write("torch/benign.pt", torch_zip(torch_pickle(state_dict())))
write("torch/malicious.pt", torch_zip(torch_pickle(state_dict(extra=os_system))))
write("torch/hidden_pickle.pt", torch_zip(torch_pickle(state_dict()), extra=[("archive/extra/notes.txt", pickle.dumps(os_system))]))
write("torch/missing_storage.pt", torch_zip(torch_pickle(state_dict()), storages=("0", "1", "7")))


def legacy(main_obj, protocol=2):
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=protocol)
    pickle.dump(1001, out, protocol=protocol)
    pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=protocol)
    TorchPickler(out, protocol=protocol).dump(main_obj)
    pickle.dump(["0", "1", "2"], out, protocol=protocol)
    for _ in range(3):
        out.write(struct.pack("<Q", 4) + struct.pack("<4f", 1, 2, 3, 4))
    return out.getvalue()


write("torch/legacy_benign.pt", legacy(state_dict()))
write("torch/legacy_malicious.pt", legacy(state_dict(extra=os_system)))
write("torch/legacy_p4.pt", legacy(state_dict(), protocol=4))

# NumPy.
write("numpy/plain.npy", npy("<f4", (2, 3), struct.pack("<6f", *range(6))))
write("numpy/plain_v2.npy", npy("<i8", (2,), struct.pack("<2q", 1, 2), version=2))
write("numpy/structured.npy", npy([("a", "<f4"), ("b", "<i2", (2,))], (2,), b"\0" * 16))
write("numpy/object.npy", npy("|O", (1,), pickle.dumps([os_system], protocol=3)))
write("numpy/bad_header.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 54) + b"{'descr': __import__('os'), 'shape': (1,)}".ljust(53) + b"\n")
write("numpy/archive.npz", pyzip([("a.npy", npy("<f4", (2,), b"\0" * 8)), ("b.npy", npy("|O", (1,), pickle.dumps([os_system], protocol=3)))]))

# joblib.
write("joblib/benign.joblib", joblib_dump({"w": FakeArray(F8, (3,), raw=struct.pack("<3d", 1, 2, 3)), "n": 5}))
write("joblib/benign_p2.joblib", joblib_dump([FakeArray(F8, (2, 2), raw=b"\x01" * 32), "tail"], protocol=2))
write("joblib/malicious_object.joblib", joblib_dump({"w": FakeArray(OBJ, (1,), objects=[os_system]), "n": 5}))
write("joblib/malicious_after.joblib", joblib_dump([FakeArray(F8, (1,), raw=b"c" * 8), os_system]))
write("joblib/compressed.joblib", zlib.compress(joblib_dump([os_system])))
write("joblib/gzip.pkl.gz", gzip.compress(pickle.dumps(os_system, protocol=2)))

# safetensors.
f32 = struct.pack("<4f", 1, 2, 3, 4)
write("st/valid.safetensors", safetensors([("a", "F32", [2, 2], f32), ("b", "I64", [1], b"\0" * 8)], metadata={"format": "pt"}))
write("st/empty_tensor.safetensors", safetensors([("a", "F32", [0, 3], b""), ("b", "BF16", [2], b"\0" * 4)]))
write("st/trailing.safetensors", safetensors([("a", "F32", [2, 2], f32)], trailing=b"\x80\x02cos\nsystem\n"))
base = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


def st_header(h, data=f32):
    return safetensors([], header_override=h if isinstance(h, str) else json.dumps(h)) + data


write("st/overlap.safetensors", st_header({**base, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}))
write("st/gap.safetensors", st_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}))
write("st/duplicate.safetensors", st_header('{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'))
write("st/proto.safetensors", st_header('{"__proto__": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16], "polluted": true}}'))
write("st/wrong_size.safetensors", st_header({"a": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 16]}}))
write("st/bad_dtype.safetensors", st_header({"a": {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}}))
write("st/negative_shape.safetensors", st_header({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}))
write("st/bad_metadata.safetensors", st_header({**base, "__metadata__": {"a": 1}}))
write("st/huge_header.safetensors", struct.pack("<Q", 200_000_000) + b'{"a": 1}' + b"\0" * 64)
write("st/past_end.safetensors", struct.pack("<Q", 5000) + b'{"a": 1}' + b"\0" * 64)
write("st/not_json.safetensors", st_header('{"a": {"dtype": "F32",, }}'))
write("st/bad_utf8.safetensors", struct.pack("<Q", 8) + b'{"\xff": 1}')

# Keras v3.
lambda_code = base64.b64encode(marshal.dumps((lambda x: __import__("os").system("id")).__code__)).decode()
harmless_code = base64.b64encode(marshal.dumps((lambda x: x * 2 + 1).__code__)).decode()


def keras_zip(layers, extra_module=None):
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "seq", "layers": layers},
        "registered_name": None,
    }
    if extra_module is not None:
        config["config"]["layers"].append(extra_module)
    return pyzip(
        [
            ("metadata.json", json.dumps({"keras_version": "3.3.3", "date_saved": "2024-01-01"})),
            ("config.json", json.dumps(config)),
            ("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64),
        ],
        zipfile.ZIP_DEFLATED,
    )


dense = {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2, "activation": "relu"}, "registered_name": None}


def lambda_layer(code):
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}},
        "registered_name": None,
    }


write("keras/benign.keras", keras_zip([dense]))
write("keras/lambda.keras", keras_zip([dense, lambda_layer(lambda_code)]))
write("keras/lambda_harmless.keras", keras_zip([dense, lambda_layer(harmless_code)]))
write("keras/custom.keras", keras_zip([dense, {"module": "my_pkg.layers", "class_name": "Evil", "config": {}, "registered_name": "my_pkg>Evil"}]))
write("keras/dangerous.keras", keras_zip([dense, {"module": "builtins", "class_name": "function", "config": "eval", "registered_name": None}]))
write(
    "keras/legacy.h5",
    b"\x89HDF\r\n\x1a\n" + b"\0" * 100 + json.dumps({"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {"function": [lambda_code, None, None]}}]}}).encode() + b"\0" * 100,
)

# ONNX.
write("onnx/benign.onnx", onnx_model("weights.bin"))
write("onnx/traversal.onnx", onnx_model("../../../etc/passwd"))
write("onnx/absolute.onnx", onnx_model("/etc/shadow"))
write("onnx/windows.onnx", onnx_model("C:\\Windows\\system32\\config"))
write("onnx/custom_domain.onnx", onnx_model("weights.bin", domain="com.evil.ops"))
write("onnx/truncated.onnx", onnx_model("weights.bin")[:-5])

# GGUF.
write("gguf/benign.gguf", gguf([("general.architecture", "llama"), ("general.alignment", 32), ("tokenizer.chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}")], tensors=[("w", 8)]))
write("gguf/ssti.gguf", gguf([("general.architecture", "llama"), ("tokenizer.chat_template", "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id').read() }}")]))
write("gguf/huge_count.gguf", gguf([("general.architecture", "llama")], n_kv=2**40))
write("gguf/bad_version.gguf", b"GGUF" + struct.pack("<I", 99) + b"\0" * 16)
write("gguf/string_overflow.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62) + b"key")
write("gguf/tensor_past_end.gguf", gguf([("general.architecture", "llama")], tensors=[("w", 8)])[:-16])

# Archives.
write("zip/encrypted.zip", build_zip([{"name": "model.pkl", "data": pickle.dumps(os_system, protocol=2), "flags": 0x1}]))
write("zip/descriptor.zip", build_zip([{"name": "model.pkl", "data": pickle.dumps(os_system, protocol=2), "flags": 0x8, "method": 8}]))
write("zip/descriptor_benign.zip", build_zip([{"name": "model.pkl", "data": benign, "flags": 0x8, "method": 8}]))
write("zip/name_mismatch.zip", build_zip([{"name": "evil.pkl", "cd_name": "readme.txt", "data": pickle.dumps(os_system, protocol=2)}]))
write("zip/size_mismatch.zip", build_zip([{"name": "a.pkl", "data": benign, "local_sizes": (5, 5)}]))
write("zip/flag_mismatch.zip", build_zip([{"name": "a.pkl", "data": benign, "cd_flags": 0x1}]))
write("zip/traversal.zip", build_zip([{"name": "../../evil.pkl", "data": benign}, {"name": "/abs/x", "data": b"x"}, {"name": "C:\\win\\x", "data": b"x"}, {"name": "..\\..\\y", "data": b"x"}]))
write("zip/duplicate.zip", build_zip([{"name": "a.pkl", "data": benign}, {"name": "a.pkl", "data": pickle.dumps(os_system)}]))
write("zip/symlink.zip", build_zip([{"name": "link", "data": b"/etc/passwd", "made_by": 0x0314, "ext_attr": 0o120777 << 16}]))
write("zip/bomb.zip", pyzip([("zeros.bin", b"\0" * (64 * 1024 * 1024))], zipfile.ZIP_DEFLATED))
write("zip/hidden_pickle.zip", pyzip([("weights.txt", pickle.dumps(os_system, protocol=4))]))
one = build_zip([{"name": "a.pkl", "data": benign}])
write("zip/overlap.zip", build_zip([{"name": "a.pkl", "data": benign}, {"name": "a.pkl", "cd_name": "b.pkl", "data": b"", "cd_offset": 0}]))
nested = pyzip([("evil.pkl", pickle.dumps(os_system))])
for depth in range(4):
    nested = pyzip([(f"level{depth}.zip", nested)])
write("zip/nested.zip", nested)
write("zip/prepended.zip", build_zip([{"name": "a.pkl", "data": pickle.dumps(os_system)}], prepend=b"#!/bin/sh\nexit 0\n"))
write("zip/polyglot.pkl", build_zip([{"name": "evil.pkl", "data": pickle.dumps(os_system)}], prepend=benign))
write("zip/gap_hidden.zip", build_zip([{"name": "evil.pkl", "data": pickle.dumps(os_system), "in_cd": False}, {"name": "a.pkl", "data": benign}]))

write(
    "tar/traversal.tar",
    tar_bytes([({"name": "../../etc/cron.d/evil"}, b"* * * * * root id\n"), ({"name": "ok.pkl"}, benign)]),
)
write(
    "tar/links.tar",
    tar_bytes(
        [
            ({"name": "sym", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None),
            ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside"}, None),
            ({"name": "fifo", "type": tarfile.FIFOTYPE}, None),
        ]
    ),
)
write("tar/hidden.tar", tar_bytes([({"name": "model/weights.txt"}, pickle.dumps(os_system))]))
write("tar/long_name.tar", tar_bytes([({"name": "d/" * 80 + "evil.pkl"}, pickle.dumps(os_system))]))
tgz = io.BytesIO()
with tarfile.open(fileobj=tgz, mode="w:gz") as t:
    data = pickle.dumps(os_system)
    info = tarfile.TarInfo("model.pkl")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
write("tar/model.tar.gz", tgz.getvalue())

print("ok")
