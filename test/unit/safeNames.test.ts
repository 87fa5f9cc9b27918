import { expect } from 'chai';
import { extensionOf, numberedName, safeComponent, safeFileName } from '../../src/sandbox/safeNames.js';

describe('safeFileName', () => {
  it('keeps only the last path component, with / or \\ as separators', () => {
    expect(safeFileName('../../etc/passwd')).to.equal('passwd');
    expect(safeFileName('C:\\Users\\me\\report.csv')).to.equal('report.csv');
    expect(safeFileName('/abs/path/to/x.txt')).to.equal('x.txt');
  });

  it('turns empty, ".", ".." and dots-only names into the fallback', () => {
    for (const name of ['', '.', '..', '...', '   ', 'dir/', 'dir/..']) expect(safeFileName(name), JSON.stringify(name)).to.equal('file');
    expect(safeFileName('', 'upload')).to.equal('upload');
  });

  it('replaces control characters and bidi overrides, and trims spaces and trailing dots', () => {
    expect(safeFileName('a\u0000b\nc\u007f.txt')).to.equal('a_b_c_.txt');
    expect(safeFileName('invoice\u202Efdp.exe')).to.equal('invoice_fdp.exe');
    expect(safeFileName('  notes.txt. . ')).to.equal('notes.txt');
  });

  it('prefixes Windows device names, with or without an extension', () => {
    expect(safeFileName('CON')).to.equal('_CON');
    expect(safeFileName('nul.txt')).to.equal('_nul.txt');
    expect(safeFileName('com1.csv')).to.equal('_com1.csv');
    expect(safeFileName('console.txt')).to.equal('console.txt');
  });

  it('keeps Unicode (NFC) and shortens long names to 200 bytes, keeping the extension and whole characters', () => {
    expect(safeFileName('cafe\u0301.txt')).to.equal('café.txt');
    const long = safeFileName(`${'é'.repeat(300)}.csv`);
    expect(Buffer.byteLength(long)).to.be.at.most(200);
    expect(long.endsWith('é.csv')).to.equal(true);
  });
});

describe('safeComponent', () => {
  it('replaces separators instead of splitting on them', () => {
    expect(safeComponent('a\\b')).to.equal('a_b');
    expect(safeComponent('..', '_')).to.equal('_');
  });
});

describe('numberedName and extensionOf', () => {
  it('puts the number before the extension, compound ones included', () => {
    expect(numberedName('report.csv', 0)).to.equal('report.csv');
    expect(numberedName('report.csv', 1)).to.equal('report (1).csv');
    expect(numberedName('backup.tar.gz', 2)).to.equal('backup (2).tar.gz');
    expect(numberedName('.env', 1)).to.equal('.env (1)');
    expect(numberedName('Makefile', 3)).to.equal('Makefile (3)');
    expect(extensionOf('x.TAR.GZ')).to.equal('.TAR.GZ');
    expect(extensionOf('.tar.gz')).to.equal('.gz');
  });
});
