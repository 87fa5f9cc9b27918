import { expect } from 'chai';
import { attachmentDisposition } from '../../src/api/contentDisposition.js';

describe('attachmentDisposition', () => {
  it('sends a plain ASCII name as it is', () => {
    expect(attachmentDisposition('report.csv')).to.equal('attachment; filename="report.csv"');
  });

  it('adds filename* (RFC 8187) and an ASCII fallback without quotes, backslashes or percent signs', () => {
    expect(attachmentDisposition('Grüße "2026" \\ 50%.pdf')).to.equal(`attachment; filename="Gr__e _2026_ _ 50_.pdf"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%222026%22%20%5C%2050%25.pdf`);
    expect(attachmentDisposition("it's (final)*.txt")).to.equal(`attachment; filename="it's (final)*.txt"`);
    expect(attachmentDisposition('日本.txt')).to.match(/filename\*=UTF-8''%E6%97%A5%E6%9C%AC\.txt$/);
    expect(attachmentDisposition("日本's.txt")).to.match(/filename\*=UTF-8''%E6%97%A5%E6%9C%AC%27s\.txt$/);
  });
});
