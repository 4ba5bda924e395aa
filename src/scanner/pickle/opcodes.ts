/**
 * The pickle opcodes of CPython's pickletools (protocols 0-5), with the shape of their in-stream argument.
 * The walker dispatches on the byte itself; this table names opcodes in findings and lets tests and fuzzers
 * enumerate the full set.
 */
export type ArgKind =
  | 'none'
  | 'uint1'
  | 'uint2'
  | 'int4'
  | 'uint4'
  | 'uint8'
  | 'float8'
  | 'long1'
  | 'long4'
  | 'string1'
  | 'string4'
  | 'bytes1'
  | 'bytes4'
  | 'bytes8'
  | 'unicode1'
  | 'unicode4'
  | 'unicode8'
  | 'decimalnl_short'
  | 'decimalnl_long'
  | 'floatnl'
  | 'stringnl'
  | 'stringnl_noescape'
  | 'stringnl_noescape_pair'
  | 'unicodestringnl';

export interface OpcodeInfo {
  readonly name: string;
  readonly arg: ArgKind;
  readonly proto: number;
}

const table: readonly (readonly [string, string, ArgKind, number])[] = [
  ['(', 'MARK', 'none', 0],
  ['.', 'STOP', 'none', 0],
  ['0', 'POP', 'none', 0],
  ['1', 'POP_MARK', 'none', 1],
  ['2', 'DUP', 'none', 0],
  ['F', 'FLOAT', 'floatnl', 0],
  ['I', 'INT', 'decimalnl_short', 0],
  ['J', 'BININT', 'int4', 1],
  ['K', 'BININT1', 'uint1', 1],
  ['L', 'LONG', 'decimalnl_long', 0],
  ['M', 'BININT2', 'uint2', 1],
  ['N', 'NONE', 'none', 0],
  ['P', 'PERSID', 'stringnl_noescape', 0],
  ['Q', 'BINPERSID', 'none', 1],
  ['R', 'REDUCE', 'none', 0],
  ['S', 'STRING', 'stringnl', 0],
  ['T', 'BINSTRING', 'string4', 1],
  ['U', 'SHORT_BINSTRING', 'string1', 1],
  ['V', 'UNICODE', 'unicodestringnl', 0],
  ['X', 'BINUNICODE', 'unicode4', 1],
  ['a', 'APPEND', 'none', 0],
  ['b', 'BUILD', 'none', 0],
  ['c', 'GLOBAL', 'stringnl_noescape_pair', 0],
  ['d', 'DICT', 'none', 0],
  ['}', 'EMPTY_DICT', 'none', 1],
  ['e', 'APPENDS', 'none', 1],
  ['g', 'GET', 'decimalnl_short', 0],
  ['h', 'BINGET', 'uint1', 1],
  ['i', 'INST', 'stringnl_noescape_pair', 0],
  ['j', 'LONG_BINGET', 'uint4', 1],
  ['l', 'LIST', 'none', 0],
  [']', 'EMPTY_LIST', 'none', 1],
  ['o', 'OBJ', 'none', 1],
  ['p', 'PUT', 'decimalnl_short', 0],
  ['q', 'BINPUT', 'uint1', 1],
  ['r', 'LONG_BINPUT', 'uint4', 1],
  ['s', 'SETITEM', 'none', 0],
  ['t', 'TUPLE', 'none', 0],
  [')', 'EMPTY_TUPLE', 'none', 1],
  ['u', 'SETITEMS', 'none', 1],
  ['G', 'BINFLOAT', 'float8', 1],
  ['\x80', 'PROTO', 'uint1', 2],
  ['\x81', 'NEWOBJ', 'none', 2],
  ['\x82', 'EXT1', 'uint1', 2],
  ['\x83', 'EXT2', 'uint2', 2],
  ['\x84', 'EXT4', 'int4', 2],
  ['\x85', 'TUPLE1', 'none', 2],
  ['\x86', 'TUPLE2', 'none', 2],
  ['\x87', 'TUPLE3', 'none', 2],
  ['\x88', 'NEWTRUE', 'none', 2],
  ['\x89', 'NEWFALSE', 'none', 2],
  ['\x8a', 'LONG1', 'long1', 2],
  ['\x8b', 'LONG4', 'long4', 2],
  ['B', 'BINBYTES', 'bytes4', 3],
  ['C', 'SHORT_BINBYTES', 'bytes1', 3],
  ['\x8c', 'SHORT_BINUNICODE', 'unicode1', 4],
  ['\x8d', 'BINUNICODE8', 'unicode8', 4],
  ['\x8e', 'BINBYTES8', 'bytes8', 4],
  ['\x8f', 'EMPTY_SET', 'none', 4],
  ['\x90', 'ADDITEMS', 'none', 4],
  ['\x91', 'FROZENSET', 'none', 4],
  ['\x92', 'NEWOBJ_EX', 'none', 4],
  ['\x93', 'STACK_GLOBAL', 'none', 4],
  ['\x94', 'MEMOIZE', 'none', 4],
  ['\x95', 'FRAME', 'uint8', 4],
  ['\x96', 'BYTEARRAY8', 'bytes8', 5],
  ['\x97', 'NEXT_BUFFER', 'none', 5],
  ['\x98', 'READONLY_BUFFER', 'none', 5],
];

/** Opcode byte to its description; `undefined` for bytes that are not opcodes. */
export const OPCODES: ReadonlyMap<number, OpcodeInfo> = new Map(
  table.map(([code, name, arg, proto]) => [code.charCodeAt(0), { name, arg, proto }]),
);

export function opcodeName(byte: number): string {
  return OPCODES.get(byte)?.name ?? `0x${byte.toString(16).padStart(2, '0')}`;
}

/** Highest protocol CPython's unpickler accepts in PROTO. */
export const HIGHEST_PROTOCOL = 5;
